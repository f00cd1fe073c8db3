//! Effective settings: what a user's or device's calls get for one direction and network,
//! field by field, each with the document (and cell) it came from, or `default`.
//!
//! Invariant: computed from [`endpoint_layers`], the same layers the plan merges
//! ([`super::resolve::plan`]), so what the console shows is what a call gets.

use super::documents::{AccountSettings, Direction, Network};
use super::model::Params;
use super::resolve::{endpoint_layers, Found, Party};

/// One field of an endpoint's effective `record_call`, and the document it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EffectiveField {
    pub field: String,
    pub value: serde_json::Value,
    /// The layer that set it (`device d-1 record_call`), or `default`.
    pub source: String,
}

/// What a user's or device's calls get for one direction and network, field by field: the
/// same merge [`plan`] applies (the console shows exactly what a call gets).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Effective {
    pub direction: &'static str,
    pub network: &'static str,
    /// The endpoint merge records these calls.
    pub records: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    pub fields: Vec<EffectiveField>,
    /// The layers, least specific first.
    pub layers: Vec<String>,
}

/// The effective endpoint settings of `party` for `dir`/`net`.
pub fn effective(
    account: Option<&Found<AccountSettings>>,
    party: &Party,
    dir: Direction,
    net: Network,
) -> Effective {
    let (layers, problem) = match endpoint_layers(account, party, dir, net) {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let legacy = layers.iter().any(|l| l.legacy);
    let mut fields: Vec<EffectiveField> = Params::defaults(legacy)
        .into_iter()
        .map(|(name, value)| EffectiveField {
            field: name.to_string(),
            value,
            source: "default".into(),
        })
        .collect();
    let mut merged = Params::default();
    for l in &layers {
        merged.overlay(&l.params);
        if let Ok(serde_json::Value::Object(set)) = serde_json::to_value(&l.params) {
            for (k, v) in set {
                if let Some(f) = fields.iter_mut().find(|f| f.field == k) {
                    f.value = v;
                    f.source = l.source.clone();
                }
            }
        }
    }
    let records = problem.is_none() && !layers.is_empty() && merged.resolve(legacy).is_some();
    let why_not = match (problem, layers.is_empty(), records) {
        (Some(p), _, _) => Some(p),
        (None, true, _) => Some(format!(
            "no record_call or call_recording cell for {} {}",
            dir.as_str(),
            net.as_str()
        )),
        (None, false, false) => Some("the merged settings are not enabled".into()),
        _ => None,
    };
    Effective {
        direction: dir.as_str(),
        network: net.as_str(),
        records,
        why_not,
        fields,
        layers: layers.into_iter().map(|l| l.source).collect(),
    }
}
