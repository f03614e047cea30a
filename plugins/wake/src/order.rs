//! Start and stop order of a service's members.
//!
//! Members start in *waves*: a wave holds every member whose dependencies
//! (`depends_on`) all started in earlier waves, so the members of one wave
//! can start together. Waves are sorted, so the order is deterministic. The
//! stop order is the reverse (dependents stop before what they depend on).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A dependency cycle, as the path `a -> b -> ... -> a` (`a` depends on `b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    /// The members on the cycle; the first one is repeated at the end.
    pub cycle: Vec<String>,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dependency cycle: {}", self.cycle.join(" -> "))
    }
}

impl std::error::Error for CycleError {}

/// Start waves of `members` under `depends_on` (member → members it needs
/// started first). Dependencies on names that are not members are ignored
/// here (validation reports them).
pub fn start_waves(
    members: &[String],
    depends_on: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Vec<String>>, CycleError> {
    let all: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    // For each member, the set of members it still waits for.
    let mut pending: BTreeMap<&str, BTreeSet<&str>> = all
        .iter()
        .map(|m| {
            let deps = depends_on
                .get(*m)
                .map(|d| {
                    d.iter()
                        .map(String::as_str)
                        .filter(|d| all.contains(d))
                        .collect()
                })
                .unwrap_or_default();
            (*m, deps)
        })
        .collect();

    let mut waves = Vec::new();
    while !pending.is_empty() {
        let wave: Vec<&str> = pending
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(m, _)| *m)
            .collect();
        if wave.is_empty() {
            return Err(find_cycle(&pending));
        }
        for m in &wave {
            pending.remove(m);
        }
        for deps in pending.values_mut() {
            for m in &wave {
                deps.remove(m);
            }
        }
        waves.push(wave.into_iter().map(str::to_owned).collect());
    }
    Ok(waves)
}

/// Stop waves: the start waves reversed.
pub fn stop_waves(
    members: &[String],
    depends_on: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Vec<String>>, CycleError> {
    let mut waves = start_waves(members, depends_on)?;
    waves.reverse();
    Ok(waves)
}

/// Every remaining member waits for at least one other remaining member, so
/// following the smallest such dependency from the smallest member must
/// revisit a member: that loop is the cycle.
fn find_cycle(pending: &BTreeMap<&str, BTreeSet<&str>>) -> CycleError {
    let mut path: Vec<&str> = Vec::new();
    let mut current = *pending.keys().next().expect("non-empty");
    loop {
        if let Some(pos) = path.iter().position(|m| *m == current) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|m| (*m).to_owned()).collect();
            cycle.push(current.to_owned());
            return CycleError { cycle };
        }
        path.push(current);
        current = pending[current]
            .iter()
            .find(|d| pending.contains_key(*d))
            .copied()
            .expect("a blocked member waits for a blocked member");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn deps(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), names(v)))
            .collect()
    }

    #[test]
    fn waves_table() {
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [(&'a str, &'a [&'a str])],
            &'a [&'a [&'a str]],
        );
        let cases: &[Case] = &[
            ("single", &["app"], &[], &[&["app"]]),
            (
                "independent sorted",
                &["web", "api", "cache"],
                &[],
                &[&["api", "cache", "web"]],
            ),
            (
                "app needs db",
                &["app", "db"],
                &[("app", &["db"])],
                &[&["db"], &["app"]],
            ),
            (
                "app, db, one-shot migration",
                &["app", "db", "migrate"],
                &[("app", &["db", "migrate"]), ("migrate", &["db"])],
                &[&["db"], &["migrate"], &["app"]],
            ),
            (
                "diamond",
                &["app", "db", "cache", "proxy"],
                &[("app", &["db", "cache"]), ("proxy", &["app"])],
                &[&["cache", "db"], &["app"], &["proxy"]],
            ),
            (
                "unknown dependency ignored",
                &["app"],
                &[("app", &["ghost"])],
                &[&["app"]],
            ),
        ];
        for (label, members, d, want) in cases {
            let got = start_waves(&names(members), &deps(d)).unwrap();
            let want: Vec<Vec<String>> = want.iter().map(|w| names(w)).collect();
            assert_eq!(got, want, "{label}");
            let mut rev = want.clone();
            rev.reverse();
            assert_eq!(
                stop_waves(&names(members), &deps(d)).unwrap(),
                rev,
                "{label} stop"
            );
        }
    }

    #[test]
    fn cycles_are_named() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a [&'a str])], &'a str);
        let cases: &[Case] = &[
            (&["a"], &[("a", &["a"])], "dependency cycle: a -> a"),
            (
                &["a", "b"],
                &[("a", &["b"]), ("b", &["a"])],
                "dependency cycle: a -> b -> a",
            ),
            (
                &["db", "app", "web", "x"],
                &[
                    ("web", &["app"]),
                    ("app", &["db"]),
                    ("db", &["web"]),
                    ("x", &[]),
                ],
                "dependency cycle: app -> db -> web -> app",
            ),
            (
                // `top` is blocked by the cycle but not on it.
                &["top", "b", "c"],
                &[("top", &["b"]), ("b", &["c"]), ("c", &["b"])],
                "dependency cycle: b -> c -> b",
            ),
        ];
        for (members, d, want) in cases {
            let err = start_waves(&names(members), &deps(d)).unwrap_err();
            assert_eq!(err.to_string(), *want);
        }
    }
}
