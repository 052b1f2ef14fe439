//! Loading and checking packs: every problem reported, content hashes, stored sources.

mod common;

use claims_domain::rules::RulePack;
use claims_rules::{RhaiPack, check_pack};
use common::TempPack;

fn problems(pack: &TempPack) -> Vec<String> {
    check_pack(pack.path()).iter().map(ToString::to_string).collect()
}

#[test]
fn a_good_pack_loads_with_its_settings_and_hash() {
    let pack_dir = TempPack::new(&[("README.md", "# test pack"), ("tests/none.json", "{}")]);
    assert!(problems(&pack_dir).is_empty(), "{:#?}", problems(&pack_dir));
    let pack = RhaiPack::load(pack_dir.path()).expect("the pack loads");
    assert_eq!(pack.settings().version.pack, "test");
    assert!(pack.version().starts_with("sha256:") && pack.version().len() == 71, "{}", pack.version());
    let paths: Vec<String> = pack.sources().iter().map(|file| file.path.clone()).collect();
    assert_eq!(paths, ["agreements/doctors.rhai", "pack.rhai", "params.rhai", "plans/products.rhai", "plans/rg.rhai"]);
}

#[test]
fn the_hash_follows_every_byte_the_engine_reads_and_nothing_else() {
    let pack_dir = TempPack::new(&[]);
    let version = RhaiPack::load(pack_dir.path()).expect("loads").version().to_owned();
    pack_dir.write("tests/case.json", "{\"name\": \"x\"}");
    pack_dir.write("README.md", "changed");
    pack_dir.write("agreements/unused.rhai", "fn tariff(a, b, c, d) { 1 }");
    assert_eq!(RhaiPack::load(pack_dir.path()).expect("loads").version(), version, "tests, README and unused files");
    pack_dir.write("plans/rg.rhai", &common::COMPULSORY.replace("tariff.rate_bps }", "tariff.rate_bps  }"));
    let changed = RhaiPack::load(pack_dir.path()).expect("loads").version().to_owned();
    assert_ne!(changed, version, "one more space in a script");
    pack_dir.write("params.rhai", &common::PARAMS.replace("2500", "2501"));
    assert_ne!(RhaiPack::load(pack_dir.path()).expect("loads").version(), changed, "one parameter");
}

#[test]
fn stored_sources_load_the_same_pack() {
    let pack_dir = TempPack::new(&[]);
    let pack = RhaiPack::load(pack_dir.path()).expect("loads");
    let replayed = RhaiPack::from_sources("stored", pack.sources()).expect("loads from sources");
    assert_eq!(replayed.version(), pack.version());
    assert_eq!(replayed.settings(), pack.settings());
}

#[test]
fn every_broken_script_is_reported() {
    let pack_dir = TempPack::new(&[
        ("plans/rg.rhai", "fn compulsory(plan, line, member, provider, claim, tariff) {\n    #{ rate_bps: 7000 \n}\n"),
        (
            "plans/products.rhai",
            "fn supplementary(plan, line, member, provider, claim, tariff, compulsory) {\n    let = 1;\n}\n",
        ),
    ]);
    let found = problems(&pack_dir);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with(&format!("{}:", pack_dir.label("plans/products.rhai"))), "{found:#?}");
    assert!(found[1].starts_with(&format!("{}:", pack_dir.label("plans/rg.rhai"))), "{found:#?}");
}

#[test]
fn each_script_must_define_the_function_of_its_role() {
    let pack_dir = TempPack::new(&[
        ("plans/rg.rhai", "fn compulsory(plan, line, member, provider, claim) { 1 }\n"),
        ("agreements/doctors.rhai", "fn tarif(line, member, provider, claim) { 1 }\n"),
    ]);
    assert_eq!(
        problems(&pack_dir),
        [
            format!(
                "{}: agreement \"test-doctors\" uses it, so this script must define fn tariff(line, member, provider, claim)",
                pack_dir.label("agreements/doctors.rhai")
            ),
            format!(
                "{}:1:1: fn compulsory must take 6 parameters: fn compulsory(plan, line, member, provider, claim, tariff)",
                pack_dir.label("plans/rg.rhai")
            ),
        ]
    );
}

#[test]
fn a_missing_script_is_reported_in_the_manifest() {
    let manifest = common::MANIFEST.replace("plans/products.rhai", "plans/product.rhai");
    let pack_dir = TempPack::new(&[("pack.rhai", &manifest)]);
    assert_eq!(
        problems(&pack_dir),
        [format!(
            "{}:7:55: script \"plans/product.rhai\" does not exist (did you mean \"plans/products.rhai\"?)",
            pack_dir.label("pack.rhai")
        )]
    );
}

#[test]
fn a_broken_manifest_does_not_hide_broken_scripts() {
    let manifest = common::MANIFEST.replace("\"EUR\"", "\"EURO\"");
    let pack_dir = TempPack::new(&[("pack.rhai", &manifest), ("plans/rg.rhai", "fn compulsory(")]);
    let found = problems(&pack_dir);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{}:3:5: unknown currency \"EURO\"", pack_dir.label("pack.rhai"))),
        "{found:#?}"
    );
    assert!(found[1].starts_with(&pack_dir.label("plans/rg.rhai")), "{found:#?}");
}

#[test]
fn an_unsorted_table_is_rejected() {
    let params = common::PARAMS.replace("\"2023-12-22\"", "\"1999-12-22\"");
    let pack_dir = TempPack::new(&[("params.rhai", &params)]);
    assert_eq!(
        problems(&pack_dir),
        [format!(
            "{}:4:11: table G_FEE: row 2 (1999-12-22) comes after 2000-01-01: rows must be sorted by date",
            pack_dir.label("params.rhai")
        )]
    );
}

#[test]
fn a_missing_manifest_is_reported() {
    let pack_dir = TempPack::new(&[]);
    std::fs::remove_file(pack_dir.path().join("pack.rhai")).expect("remove the manifest");
    let error = RhaiPack::load(pack_dir.path()).expect_err("no manifest");
    assert_eq!(
        error.to_string(),
        format!("{}: missing: every pack needs a manifest pack.rhai", pack_dir.label("pack.rhai"))
    );
}
