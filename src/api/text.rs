//! Text that many stored objects repeat, kept once.
//!
//! The stores hold every watched object for as long as it exists, and most of their text repeats:
//! at 10,000 BankClients, 10,000 AppRegistrations say `Ready`, `True`, `Synced` and "The app
//! registration matches the spec" in six conditions each. A [`Text`] decoded from JSON is looked
//! up in one table of live texts and shares its allocation with every equal one, so the stores
//! pay for each distinct text once, not once per object (BENCHMARKS.md "Scale").
//!
//! The table holds only texts some object still uses: every so many new entries it drops the
//! ones nothing else holds, so unique texts (a failure message with a request ID) leave with the
//! last object that carried them. Text built in code (a condition a reconcile computes) is not
//! looked up: it lives only until it is written. Metric labels are ([`Text::label`]): a series
//! lives as long as its resource.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable string shared by equal texts decoded from JSON. Reads like a `&str`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Arc<str>);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared copy of `s`, added to the table if it is new.
    pub fn interned(s: &str) -> Text {
        Text(TABLE.intern(s))
    }

    /// A metric label value: the shared copy, as series live as long as what they describe.
    pub fn label(s: &str) -> Text {
        Self::interned(s)
    }
}

struct Table {
    inner: LazyLock<Mutex<Entries>>,
}

/// Live texts, how many were added since the last sweep of unused ones, and how many the last
/// sweep kept.
type Entries = (HashSet<Arc<str>>, usize, usize);

/// New entries between two sweeps: a sweep is linear in the table, so this keeps its cost per
/// entry constant.
const SWEEP_EVERY: usize = 4096;

impl Table {
    fn intern(&self, s: &str) -> Arc<str> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (set, added, kept) = &mut *guard;
        if let Some(shared) = set.get(s) {
            return shared.clone();
        }
        *added += 1;
        // As many additions as the last sweep kept (at least SWEEP_EVERY) pay for the next one.
        if *added >= SWEEP_EVERY.max(*kept) {
            // Only the table holds these: no object uses them any more.
            set.retain(|t| Arc::strong_count(t) > 1);
            *added = 0;
            *kept = set.len();
        }
        let shared: Arc<str> = Arc::from(s);
        set.insert(shared.clone());
        shared
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().0.len()
    }
}

static TABLE: Table = Table {
    inner: LazyLock::new(|| Mutex::new((HashSet::new(), 0, 0))),
};

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Arc::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Arc::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text(Arc::from(s.as_str()))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0.to_string()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        &*self.0 == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == &*other.0
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text::interned(s))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_decoded_texts_share_one_allocation_and_unused_ones_leave_the_table() {
        let a: Text = serde_json::from_str("\"shared by many objects\"").unwrap();
        let b: Text = serde_json::from_str("\"shared by many objects\"").unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "shared by many objects");
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            "\"shared by many objects\""
        );
        // Built in code: its own allocation, not in the table.
        let built = Text::from("shared by many objects".to_string());
        assert!(!Arc::ptr_eq(&a.0, &built.0));
        assert_eq!(a, built);

        // Texts nothing holds any more go at the next sweep; held ones stay.
        let unique: Vec<Text> = (0..SWEEP_EVERY)
            .map(|i| serde_json::from_str(&format!("\"failure {i} (request-id …)\"")).unwrap())
            .collect();
        let with_unique = TABLE.len();
        drop(unique);
        for i in 0..=SWEEP_EVERY {
            let _: Text = serde_json::from_str(&format!("\"later {i}\"")).unwrap();
        }
        assert!(
            TABLE.len() < with_unique,
            "{} entries after a sweep, {with_unique} before",
            TABLE.len()
        );
        let again: Text = serde_json::from_str("\"shared by many objects\"").unwrap();
        assert!(
            Arc::ptr_eq(&a.0, &again.0),
            "a held text stayed in the table"
        );
    }
}
