//! Reading what the plugin keeps in storage, whichever version wrote it,
//! so an upgrade (or a downgrade) keeps every service and its state.
//!
//! - A service's state (`state/{service}`): this version stores the whole
//!   [`ServiceState`] document; v0.1.0 stored only the state's name
//!   (`"awake"`). A bare name is read as that state, so the first
//!   observation after the upgrade starts from what the service was
//!   (e.g. an `awake` service whose member stopped while WakeDock was
//!   being upgraded goes `asleep` naming it), and the record is rewritten
//!   in the current form.
//! - The services defined through the API (`api/services`): decoded entry
//!   by entry. An entry this version cannot read (a field an earlier
//!   version had, or a later one added before a downgrade) is reported
//!   (`/api/v1/services` `errors`) and kept as written by later writes
//!   instead of hiding every other service and being erased by the next
//!   change.
//! - Keys only earlier versions wrote ([`LEGACY_PREFIXES`]) are removed
//!   when the plugin starts: nothing reads them any more, and they count
//!   against the storage quota.
//!
//! Serde only: nothing here calls the SDK.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::contract::{MemberStatus, ServiceState, StateName};
use crate::service::{parse_def, Service, ServiceDef, ValidationError};
use crate::state::{document, observed, reconcile, Next};

/// Key prefixes of records that only earlier versions wrote (v0.1.0's
/// `waking/{service}`: when a wake started; now `op/{service}`).
pub const LEGACY_PREFIXES: &[&str] = &["waking/"];

/// A stored service state, as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredState {
    /// Written by this version.
    Current(ServiceState),
    /// v0.1.0's bare state name.
    Legacy(StateName),
    /// Neither (replaced by the next observation).
    Unreadable,
}

impl StoredState {
    pub fn decode(raw: &[u8]) -> Self {
        if let Ok(doc) = serde_json::from_slice::<ServiceState>(raw) {
            return StoredState::Current(doc);
        }
        match serde_json::from_slice::<StateName>(raw) {
            Ok(name) => StoredState::Legacy(name),
            Err(_) => StoredState::Unreadable,
        }
    }

    /// The document an observation of `service` starts from: a legacy
    /// name as the document `service` publishes in that state (no
    /// members, no reason: v0.1.0 kept neither).
    pub fn document(&self, service: &Service) -> Option<ServiceState> {
        match self {
            StoredState::Current(doc) => Some(doc.clone()),
            StoredState::Legacy(name) => Some(document(service, Next::plain(*name), 0, 0)),
            StoredState::Unreadable => None,
        }
    }

    /// What to publish after observing `service`'s members
    /// ([`observed`]). A record in an older form is always rewritten: if
    /// the observation changes nothing, with what a first observation
    /// says (the host is seeded only with documents in this version's
    /// form).
    pub fn observe(
        &self,
        service: &Service,
        members: &BTreeMap<String, MemberStatus>,
    ) -> Option<Next> {
        let prev = self.document(service);
        observed(service, prev.as_ref(), members).or_else(|| {
            (!self.is_current())
                .then(|| reconcile(service, None, members))
                .flatten()
        })
    }

    /// Whether the record is in this version's form (else the next write
    /// must rewrite it, even when it says the same).
    pub fn is_current(&self) -> bool {
        matches!(self, StoredState::Current(_))
    }
}

/// The services defined through the API, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiDefs {
    /// The entries that decode, in stored order.
    pub defs: Vec<ServiceDef>,
    /// The entries that do not, exactly as stored.
    pub unreadable: Vec<Value>,
    /// Why each unreadable entry is, naming its service.
    pub errors: Vec<ValidationError>,
}

impl ApiDefs {
    /// Decodes the stored list (`None`: nothing stored yet).
    pub fn decode(raw: Option<&[u8]>) -> Self {
        let mut out = ApiDefs::default();
        let Some(raw) = raw else {
            return out;
        };
        let items = match serde_json::from_slice::<Value>(raw) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                out.keep_unreadable(other, "the stored list of services is not a list");
                return out;
            }
            Err(e) => {
                let text = String::from_utf8_lossy(raw).into_owned();
                out.keep_unreadable(
                    Value::String(text),
                    format!("the stored list of services is not JSON: {e}"),
                );
                return out;
            }
        };
        for item in items {
            match parse_def(&item) {
                Ok(def) => out.defs.push(def),
                Err(e) => {
                    let message = format!(
                        "stored definition not readable by this version, kept as stored \
                         (redefine or delete it through the API): {}",
                        e.message
                    );
                    out.errors.push(ValidationError { message, ..e });
                    out.unreadable.push(item);
                }
            }
        }
        out
    }

    fn keep_unreadable(&mut self, item: Value, message: impl Into<String>) {
        self.errors.push(ValidationError {
            service: "*".into(),
            field: String::new(),
            message: message.into(),
        });
        self.unreadable.push(item);
    }

    /// Drops the unreadable entries named `name` (the user redefines or
    /// deletes that service); whether there were any.
    pub fn forget_unreadable(&mut self, name: &str) -> bool {
        let before = self.unreadable.len();
        self.unreadable
            .retain(|v| v.get("name").and_then(Value::as_str) != Some(name));
        self.errors.retain(|e| e.service != name);
        self.unreadable.len() != before
    }

    /// What to store: every readable entry, then every unreadable one as
    /// it was.
    pub fn to_json(&self) -> Value {
        let mut items: Vec<Value> = self
            .defs
            .iter()
            .map(|d| serde_json::to_value(d).expect("a definition serializes"))
            .collect();
        items.extend(self.unreadable.iter().cloned());
        Value::Array(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::MemberPhase;
    use crate::service::Source;
    use serde_json::json;

    /// `api/services` exactly as v0.1.0 wrote it
    /// (tests/fixtures/upgrade-v0.1.0/tables.json, `plugin_kv`).
    const V0_1_0_API_SERVICES: &[u8] = br#"[{"name":"fixture-web","display_name":"Fixture web","members":["fixture-web-app"],"idle_timeout":"15m"}]"#;

    fn web() -> Service {
        let api = ApiDefs::decode(Some(V0_1_0_API_SERVICES));
        api.defs[0].clone().validate(Source::Api).unwrap()
    }

    #[test]
    fn v0_1_0_api_services_are_read() {
        let api = ApiDefs::decode(Some(V0_1_0_API_SERVICES));
        assert!(api.errors.is_empty(), "{:?}", api.errors);
        let s = web();
        assert_eq!(s.name, "fixture-web");
        assert_eq!(s.display_name, "Fixture web");
        assert_eq!(s.members, ["fixture-web-app"]);
        assert_eq!(s.idle_timeout_ms, 15 * 60 * 1000);
    }

    #[test]
    fn v0_1_0_states_are_read_as_their_name() {
        for name in StateName::ALL {
            let raw = serde_json::to_vec(name.as_str()).unwrap();
            let stored = StoredState::decode(&raw);
            assert_eq!(stored, StoredState::Legacy(name));
            assert!(!stored.is_current());
            let doc = stored.document(&web()).unwrap();
            assert_eq!(
                (doc.state, doc.display_name.as_str()),
                (name, "Fixture web")
            );
        }
        let current = document(&web(), Next::plain(StateName::Awake), 7, 0);
        let stored = StoredState::decode(&serde_json::to_vec(&current).unwrap());
        assert_eq!(stored, StoredState::Current(current));
        assert!(stored.is_current());
        assert_eq!(
            StoredState::decode(b"{\"state\": 3}"),
            StoredState::Unreadable
        );
        assert_eq!(StoredState::decode(b"\"dozing\""), StoredState::Unreadable);
    }

    /// v0.1.0 said `awake`; the member stopped while WakeDock was being
    /// upgraded. The first observation says so, as it would have had the
    /// state been written by this version (read as "no state", it would
    /// only say `asleep`, hiding that the member stopped outside WakeDock).
    #[test]
    fn an_awake_v0_1_0_service_whose_member_stopped_meanwhile_says_why_it_sleeps() {
        let s = web();
        let prev = StoredState::decode(b"\"awake\"").document(&s);
        let members = BTreeMap::from([(
            "fixture-web-app".to_owned(),
            MemberStatus::Exited { exit_code: Some(0) },
        )]);
        let next = observed(&s, prev.as_ref(), &members).unwrap();
        assert_eq!(next.state, StateName::Asleep);
        assert_eq!(
            next.reason.as_deref(),
            Some("member \"fixture-web-app\" stopped outside WakeDock")
        );
        assert_eq!(
            StoredState::decode(b"\"awake\"").observe(&s, &members),
            Some(next)
        );
    }

    /// An old record is rewritten at the first observation even when the
    /// service's state did not change; one in this version's form is not.
    #[test]
    fn an_unchanged_v0_1_0_state_is_still_rewritten() {
        let s = web();
        let stopped = BTreeMap::from([(
            "fixture-web-app".to_owned(),
            MemberStatus::Exited { exit_code: Some(0) },
        )]);
        let legacy = StoredState::decode(b"\"asleep\"");
        assert_eq!(observed(&s, legacy.document(&s).as_ref(), &stopped), None);
        let next = legacy.observe(&s, &stopped).unwrap();
        assert_eq!(next.state, StateName::Asleep);
        assert_eq!(next.members[0].status, MemberPhase::Asleep);
        let current = StoredState::Current(document(&s, next, 1, 0));
        assert_eq!(current.observe(&s, &stopped), None);

        let ready = BTreeMap::from([(
            "fixture-web-app".to_owned(),
            MemberStatus::Running { ready: true },
        )]);
        let next = StoredState::decode(b"\"awake\"").observe(&s, &ready);
        assert_eq!(next.map(|n| n.state), Some(StateName::Awake));
    }

    #[test]
    fn an_unreadable_api_service_hides_no_other_and_survives_a_write() {
        let stored = json!([
            {"name": "blog", "members": ["blog-app"]},
            {"name": "wiki", "members": ["wiki-app"], "colour": "blue"},
            {"name": "shop", "members": ["shop-app"], "idle_timeout": "5m"}
        ]);
        let raw = serde_json::to_vec(&stored).unwrap();
        let mut api = ApiDefs::decode(Some(&raw));
        let names: Vec<&str> = api.defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["blog", "shop"]);
        assert_eq!(api.errors.len(), 1);
        assert_eq!(api.errors[0].service, "wiki");
        assert!(
            api.errors[0].message.contains("colour"),
            "{}",
            api.errors[0]
        );
        // Another service changes: the unreadable entry is stored again
        // as it was.
        api.defs.retain(|d| d.name != "blog");
        let again = ApiDefs::decode(Some(&serde_json::to_vec(&api.to_json()).unwrap()));
        assert_eq!(again.unreadable, [stored[1].clone()]);
        assert_eq!(again.defs.len(), 1);
        // Redefined by the user: the old entry goes.
        let mut api = again;
        assert!(api.forget_unreadable("wiki"));
        assert!(api.errors.is_empty());
        assert!(!api.forget_unreadable("wiki"));
        assert_eq!(api.to_json().as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_stored_list_that_is_not_a_list_is_reported_and_kept() {
        for raw in [&b"{\"name\": \"x\"}"[..], b"not json"] {
            let api = ApiDefs::decode(Some(raw));
            assert!(api.defs.is_empty());
            assert_eq!(api.errors.len(), 1, "{:?}", api.errors);
            assert_eq!(api.unreadable.len(), 1);
        }
        assert_eq!(ApiDefs::decode(None), ApiDefs::default());
    }
}
