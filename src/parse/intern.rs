//! A process-wide set of variable names, so a compiled format can label every parsed line
//! with a `&'static str` without allocating per line, and recompiling formats (a daemon
//! does it for every new file) costs no memory once each name has been seen.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Distinct names only: the set bounds the leak to one copy per name ever compiled.
static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

#[cfg(test)]
thread_local! {
    /// Names this thread added, so a test can count its own insertions while other tests
    /// intern concurrently.
    static ADDED_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The one `'static` copy of `name`.
pub(super) fn intern(name: &str) -> &'static str {
    // A panic while holding the lock cannot leave the set inconsistent (insert is the only
    // write), so a poisoned lock is still usable.
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&interned) = names.get(name) {
        return interned;
    }
    let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(interned);
    #[cfg(test)]
    ADDED_HERE.with(|added| added.set(added.get() + 1));
    interned
}

/// How many names this thread has added to the set.
#[cfg(test)]
pub(super) fn added_by_this_thread() -> usize {
    ADDED_HERE.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_copy() {
        let first = intern(&String::from("x_intern_test_name"));
        let before = added_by_this_thread();
        let again = intern(&String::from("x_intern_test_name"));
        assert_eq!(first, "x_intern_test_name");
        assert!(std::ptr::eq(first, again));
        assert_eq!(added_by_this_thread(), before);
        let other = intern("x_intern_test_other");
        assert_eq!(other, "x_intern_test_other");
        assert_eq!(added_by_this_thread(), before + 1);
    }
}
