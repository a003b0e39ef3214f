//! Layers only call down: `.ci/module-cycles` finds no import cycle between the files of
//! host/src (see the script's header for what counts as an import).

use std::path::Path;
use std::process::Command;

#[test]
fn no_file_of_host_src_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join(".ci/module-cycles"))
        .arg(root.join("host/src"))
        .output()
        .expect("python3 runs .ci/module-cycles");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" 0 cycle(s)"), "{report}");
}
