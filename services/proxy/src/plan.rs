//! The diff between what should be and what a backend has of its own.

use std::collections::BTreeMap;

/// What to change so that `owned` becomes `desired`.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'a, V> {
    pub create: Vec<(&'a str, &'a V)>,
    pub update: Vec<(&'a str, &'a V)>,
    /// Names the backend has (of ours) that are no longer wanted.
    pub delete: Vec<&'a str>,
}

impl<V> Plan<'_, V> {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    pub fn changes(&self) -> usize {
        self.create.len() + self.update.len() + self.delete.len()
    }
}

/// `owned` holds only entries this service created: anything else a backend holds
/// is never in a plan's `delete` or `update`.
pub fn plan<'a, V: PartialEq>(desired: &'a BTreeMap<String, V>, owned: &'a BTreeMap<String, V>) -> Plan<'a, V> {
    let mut out = Plan {
        create: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
    };
    for (name, want) in desired {
        match owned.get(name) {
            None => out.create.push((name, want)),
            Some(have) if have != want => out.update.push((name, want)),
            Some(_) => {}
        }
    }
    out.delete = owned
        .keys()
        .filter(|name| !desired.contains_key(*name))
        .map(String::as_str)
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_updates_and_deletes_only_owned() {
        let desired = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2), ("c".to_string(), 3)]);
        let owned = BTreeMap::from([("b".to_string(), 2), ("c".to_string(), 9), ("gone".to_string(), 4)]);
        let p = plan(&desired, &owned);
        assert_eq!(p.create, [("a", &1)]);
        assert_eq!(p.update, [("c", &3)]);
        assert_eq!(p.delete, ["gone"]);
        assert_eq!(p.changes(), 3);
        assert!(plan(&desired, &desired).is_empty());
    }
}
