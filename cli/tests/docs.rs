//! Every verdict, end reason and `pan_end_reason` value the engine can write is
//! documented in docs/verdicts.md and allowed by docs/verdict.schema.json.

mod common;

use common::root;
use engine::verdict::{EndReason, PanReason, Verdict};

fn enum_of(schema: &serde_json::Value, field: &str) -> Vec<String> {
    schema["properties"][field]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("schema has no enum for {field}"))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_value_is_documented_and_in_the_schema() {
    let doc = std::fs::read_to_string(root().join("docs/verdicts.md")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/verdict.schema.json")).unwrap(),
    )
    .unwrap();
    let values = [
        (
            "verdict",
            Verdict::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
        ),
        (
            "end_reason",
            EndReason::ALL.iter().map(|e| e.as_str()).collect(),
        ),
        (
            "pan_end_reason",
            PanReason::ALL.iter().map(|p| p.as_str()).collect(),
        ),
    ];
    for (field, names) in values {
        let allowed = enum_of(&schema, field);
        for name in names {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/verdicts.md does not document {field} `{name}`"
            );
            assert!(
                allowed.iter().any(|a| a == name),
                "the schema's {field} does not allow `{name}`"
            );
        }
    }
}
