//! The text inputs of `stepup test` and `stepup replay`: a test suite file
//! (parsed against the example policies, run when it parses, rendered as
//! text and JUnit) and JSON lines of recorded decisions (replayed under the
//! example policies against the recorded decisions and against the set
//! itself, the report or the line error rendered). The same text goes to
//! both: a suite is rarely valid JSON lines and vice versa, and the
//! corpora of both grow together.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use stepup::Report;
use stepup::internal::{
    Baseline, ReplayOptions, SourceFile, SuiteNames, junit, read_suite_file, replay, run_suites,
    suite_text,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = common::policies();

    let names = SuiteNames::of(set);
    let file = SourceFile {
        path: "fuzz_test.yaml".into(),
        text: text.to_owned(),
    };
    let mut report = Report::default();
    let suites = read_suite_file(&file, &names, &mut report);
    let _ = report.to_string();
    if !report.has_errors() {
        let run = run_suites(set, &suites, None);
        let _ = suite_text(&run, true);
        let _ = junit(&run);
    }

    let options = ReplayOptions {
        examples: 3,
        now: common::now(),
        cache: 0,
    };
    for baseline in [
        Baseline::Recorded,
        Baseline::Set(std::sync::Arc::clone(set)),
    ] {
        match replay(text.as_bytes(), "fuzz.jsonl", set, &baseline, &options) {
            Ok(r) => {
                let _ = r.text();
                let _ = r.json();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
