//! Where YAML syntax errors are placed.

use super::*;

/// The diagnostic for `text`, which must not parse.
fn error_in(text: &str) -> Diagnostic {
    let file = SourceFile {
        path: "p.yaml".into(),
        text: text.to_owned(),
    };
    let mut report = Report::default();
    assert!(documents(&file, &mut report).is_none(), "{text}");
    assert_eq!(report.diagnostics.len(), 1, "{report}");
    report.diagnostics.remove(0)
}

#[test]
fn a_tab_is_pointed_at_where_it_is() {
    // The scanner blames the scalar on line 2, which may go on over line 3.
    let e = error_in("apiVersion: stepup/v1\nkind: Policy\n\tname: x\n");
    assert_eq!(e.code, Code::InvalidYaml);
    assert_eq!(
        e.location,
        Some(Location {
            line: 3,
            column: 1,
            len: 1
        }),
        "{e}"
    );
    assert!(e.to_string().contains("replace the tab with spaces"), "{e}");
    // A tab after spaces, further down.
    let e = error_in("rules:\n  - id: a\n    description: x\n  \t actions: [x]\n");
    assert_eq!(e.location.map(|l| (l.line, l.column)), Some((4, 3)), "{e}");
}

#[test]
fn other_errors_keep_the_scanners_place() {
    let e = error_in("name: [\n");
    assert_eq!(e.location.map(|l| l.line), Some(2), "{e}");
    assert!(!e.to_string().contains("tab"), "{e}");
}
