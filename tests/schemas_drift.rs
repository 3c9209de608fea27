//! The published JSON Schemas in `schemas/json/` match the wire types.

use std::path::Path;

#[test]
fn committed_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/json");
    let generated = unmark_schemas::json_schemas();
    for (name, text) in &generated {
        let committed = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|_| panic!("schemas/json/{name} is missing; run `unmark schemas`"));
        assert_eq!(
            &committed, text,
            "schemas/json/{name} is stale; run `unmark schemas`"
        );
    }
    let files = std::fs::read_dir(&dir).expect("schemas/json").count();
    assert_eq!(
        files,
        generated.len(),
        "schemas/json has files the code does not make"
    );
}
