//! Spec versions: which are supported, and the result in each one's shape.

use serde_json::{json, Value};

/// Newest first.
pub const SUPPORTED: [&str; 5] = ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"];
pub const LATEST: &str = "1.1.0";

pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// Does `version` have the CHECK verb (0.4.0 and later)?
pub fn has_check(version: &str) -> bool {
    version != "0.3.0" && version != "0.3.1"
}

/// Does `version` have STATUS and GC (1.1.0)?
pub fn has_status_and_gc(version: &str) -> bool {
    version == "1.1.0"
}

/// The VERSION answer.
pub fn version_answer(requested: Option<&str>) -> Value {
    let version = requested.filter(|v| is_supported(v)).unwrap_or(LATEST);
    json!({ "cniVersion": version, "supportedVersions": SUPPORTED })
}

/// A result in the 1.x shape converted to `version` (before 1.0, each IP
/// says its family in `version`).
pub fn convert_result(mut result: Value, version: &str) -> Value {
    result["cniVersion"] = Value::String(version.to_string());
    if version.starts_with("0.") {
        if let Some(ips) = result.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                ip["version"] = Value::String("4".into());
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_versions_say_the_ip_family() {
        let result = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.17.2/32"}]});
        let old = convert_result(result.clone(), "0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["cniVersion"], "0.4.0");
        let new = convert_result(result, "1.0.0");
        assert!(new["ips"][0].get("version").is_none());
    }

    #[test]
    fn version_answer_lists_exactly_the_supported_versions() {
        let answer = version_answer(Some("0.3.1"));
        assert_eq!(answer["cniVersion"], "0.3.1");
        assert_eq!(answer["supportedVersions"], json!(SUPPORTED));
        assert_eq!(version_answer(Some("9.9.9"))["cniVersion"], LATEST);
    }
}
