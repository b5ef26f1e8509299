//! Real containers, as root: output, exit codes, signals, cgroup limits, OOM kills, seccomp,
//! capabilities, namespaces, read-only root, users.

mod common;

use common::Fixture;

#[test]
fn echo_output_reaches_the_given_stdout() {
    let f = Fixture::new();
    let (exit, out, err) = f.run(&f.config(&["/bin/sh", "-c", "echo hi"]));
    assert_eq!(out, "hi\n", "stderr: {err}");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(exit.reason, "Completed");
    assert!(!exit.oom_killed);
}
