//! Every policy shipped in the repository parses, validates and builds: what the docs show works.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};

use cerberus_core::{
    EffectivePolicy, GuardrailRegistry, PolicyDocument, PolicyFormat, PolicyLevel,
};

fn policy_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> PolicyDocument {
    let text = std::fs::read_to_string(path).unwrap();
    PolicyDocument::parse(&text, PolicyFormat::from_path(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_policy_validates_and_builds() {
    let registry = GuardrailRegistry::default();
    let files = policy_files();
    assert!(files.len() >= 3, "examples/policies holds the three levels");
    for path in &files {
        let document = load(path);
        registry
            .validate(&document)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        registry.build(&EffectivePolicy::single(&document)).unwrap();
    }
}

#[test]
fn the_example_levels_merge_as_documented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies");
    let org = load(&dir.join("organisation.json"));
    let workspace = load(&dir.join("workspace.toml"));
    let agent = load(&dir.join("agent.json"));
    let policy = EffectivePolicy::merge([
        (PolicyLevel::Organisation, &org),
        (PolicyLevel::Workspace, &workspace),
        (PolicyLevel::Agent, &agent),
    ]);
    let level = |t: &str| policy.get(t).map(|e| e.level);
    assert_eq!(level("rbac"), Some(PolicyLevel::Workspace));
    assert_eq!(level("pii_email"), None, "the agent switched it off");
    assert_eq!(
        level("pii_ssn"),
        Some(PolicyLevel::Organisation),
        "mandatory: the agent could not"
    );
    assert_eq!(level("rate_limit_per_minute"), Some(PolicyLevel::Agent));
    assert_eq!(
        level("content_structured_data"),
        Some(PolicyLevel::Workspace)
    );
    assert_eq!(policy.ignored.len(), 1);
    GuardrailRegistry::default().build(&policy).unwrap();
}
