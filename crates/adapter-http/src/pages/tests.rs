//! In-process tests of the pages.
