//! Rendering the pages: one minijinja environment (HTML autoescaping by the `.html`
//! extension) and the texts of every language, one JSON file per language.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use minijinja::{Environment, Value};

/// The built-in templates, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../pages/templates/base.html")),
    (
        "forgot.html",
        include_str!("../../pages/templates/forgot.html"),
    ),
    ("sent.html", include_str!("../../pages/templates/sent.html")),
    (
        "reset.html",
        include_str!("../../pages/templates/reset.html"),
    ),
    (
        "invalid.html",
        include_str!("../../pages/templates/invalid.html"),
    ),
    (
        "changed.html",
        include_str!("../../pages/templates/changed.html"),
    ),
    (
        "message.html",
        include_str!("../../pages/templates/message.html"),
    ),
];

/// The built-in languages, by tag; the first is the default and fills in any text another
/// language lacks.
const LANGUAGES: &[(&str, &str)] = &[
    ("en", include_str!("../../pages/i18n/en.json")),
    ("it", include_str!("../../pages/i18n/it.json")),
];

/// The built-in style sheet, served at `/assets/pages.css`.
const STYLE: &str = include_str!("../../pages/pages.css");

/// One language's texts, by key.
pub(crate) type Texts = BTreeMap<String, String>;

/// The page templates, the texts of every language and the style sheet.
#[derive(Debug)]
pub(crate) struct Renderer {
    env: Environment<'static>,
    /// Language tag (lowercase) to its texts, the default's filled in.
    languages: BTreeMap<String, Texts>,
    pub(crate) style: String,
}

fn parse_texts(source: &str, what: &str) -> anyhow::Result<Texts> {
    serde_json::from_str(source).with_context(|| format!("{what} is not a JSON object of texts"))
}

impl Renderer {
    /// The built-in pages, with files from `dir` taking their place: any `<name>.html`
    /// template, `<lang>.json` texts (over the built-in ones of that language, or a new
    /// language) and `pages.css`.
    pub(crate) fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut templates: BTreeMap<String, String> = TEMPLATES
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect();
        let mut languages = BTreeMap::new();
        for (tag, source) in LANGUAGES {
            languages.insert((*tag).to_owned(), parse_texts(source, tag)?);
        }
        let mut style = STYLE.to_owned();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read page templates in {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                let (Some(stem), Some(ext)) = (
                    path.file_stem().and_then(|s| s.to_str()),
                    path.extension().and_then(|s| s.to_str()),
                ) else {
                    continue;
                };
                let read = || {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))
                };
                match ext {
                    "html" => {
                        templates.insert(format!("{stem}.html"), read()?);
                    }
                    "json" => {
                        let texts = parse_texts(&read()?, &path.display().to_string())?;
                        languages
                            .entry(stem.to_ascii_lowercase())
                            .or_insert_with(Texts::new)
                            .extend(texts);
                    }
                    "css" if stem == "pages" => style = read()?,
                    _ => {}
                }
            }
        }
        let default = languages.get(LANGUAGES[0].0).cloned().unwrap_or_default();
        for texts in languages.values_mut() {
            for (key, text) in &default {
                texts.entry(key.clone()).or_insert_with(|| text.clone());
            }
        }
        let mut env = Environment::new();
        for (name, source) in templates {
            env.add_template_owned(name.clone(), source)
                .with_context(|| format!("page template {name} does not parse"))?;
        }
        let renderer = Self {
            env,
            languages,
            style,
        };
        // Fail at start, not on a customer's request.
        for lang in renderer.languages.keys() {
            for (name, _) in TEMPLATES {
                renderer
                    .render(name, lang, BTreeMap::new())
                    .with_context(|| format!("page template {name} does not render in {lang}"))?;
            }
        }
        Ok(renderer)
    }

    /// The language of `accept_language` (an `Accept-Language` value) that we have texts
    /// for, by quality then order; the default language otherwise.
    pub(crate) fn language(&self, accept_language: Option<&str>) -> &str {
        let mut wanted: Vec<(f32, usize, String)> = accept_language
            .unwrap_or_default()
            .split(',')
            .enumerate()
            .filter_map(|(i, item)| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim().to_ascii_lowercase();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| {
                        q.trim()
                            .parse::<f32>()
                            .ok()
                            .filter(|q| (0.0..=1.0).contains(q))
                    })?;
                (!tag.is_empty() && q > 0.0).then_some((q, i, tag))
            })
            .collect();
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, tag) in &wanted {
            let primary = tag.split('-').next().unwrap_or_default();
            for candidate in [tag.as_str(), primary] {
                if let Some((known, _)) = self.languages.get_key_value(candidate) {
                    return known;
                }
            }
        }
        LANGUAGES[0].0
    }

    /// The texts of `lang` (the default language's when unknown).
    pub(crate) fn texts(&self, lang: &str) -> &Texts {
        self.languages
            .get(lang)
            .or_else(|| self.languages.get(LANGUAGES[0].0))
            .unwrap_or_else(|| empty_texts())
    }

    /// Renders template `name` in `lang` with `values` (and `lang` and `t`, the texts).
    pub(crate) fn render(
        &self,
        name: &str,
        lang: &str,
        values: BTreeMap<&'static str, Value>,
    ) -> Result<String, minijinja::Error> {
        let mut ctx: BTreeMap<&str, Value> = values;
        ctx.insert("lang", Value::from(lang));
        ctx.insert("t", Value::from(self.texts(lang).clone()));
        self.env.get_template(name)?.render(Value::from(ctx))
    }
}

fn empty_texts() -> &'static Texts {
    static EMPTY: std::sync::OnceLock<Texts> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Texts::new)
}
