//! The shipped list of common passwords (see `data/README.md` for its origin and licence).

use pwreset_domain::CommonPasswords;

const LIST: &str = include_str!("../data/common-passwords-100k.txt");

/// The 100,000 most common passwords, held as a sorted slice of the embedded text (about
/// 1.6 MB of pointers; the text itself stays in the binary's read-only data).
#[derive(Clone)]
pub struct CommonPasswordList {
    sorted: Vec<&'static str>,
}

impl std::fmt::Debug for CommonPasswordList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommonPasswordList({} entries)", self.sorted.len())
    }
}

impl CommonPasswordList {
    /// The embedded list.
    #[must_use]
    pub fn embedded() -> Self {
        let mut sorted: Vec<&'static str> = LIST.lines().filter(|l| !l.is_empty()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        Self { sorted }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    fn has(&self, s: &str) -> bool {
        self.sorted.binary_search(&s).is_ok()
    }
}

impl CommonPasswords for CommonPasswordList {
    fn contains(&self, normalized: &str) -> bool {
        self.has(normalized) || self.has(&normalized.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_a_hundred_thousand_entries_and_catches_common_ones() {
        let list = CommonPasswordList::embedded();
        assert_eq!(list.len(), 100_000);
        for common in [
            "123456", "password", "12345678", "qwerty", "iloveyou", "PASSWORD",
        ] {
            assert!(list.contains(common), "{common}");
        }
        assert!(!list.contains("correct horse battery staple 7"));
        assert!(!list.is_empty());
        assert_eq!(format!("{list:?}"), "CommonPasswordList(100000 entries)");
    }

    #[test]
    fn an_empty_list_says_so_and_contains_nothing() {
        let empty = CommonPasswordList { sorted: Vec::new() };
        assert!(empty.is_empty());
        assert!(!empty.contains("password"));
    }

    #[test]
    fn a_listed_password_in_another_case_is_common_too() {
        // The list holds "password" but not this spelling: only the lowercase lookup finds it.
        let list = CommonPasswordList::embedded();
        assert!(!list.has("PaSsWoRd"));
        assert!(list.contains("PaSsWoRd"));
    }
}
