//! `deckhand runtime` as a process: serves on the socket it logs, replaces a stale socket
//! file, and removes its socket when SIGTERM stops it. (The CRI semantics are tested in
//! `crates/runtime/tests/cri_images.rs`.)

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn serves_on_socket_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/deckhand/cri.sock");
    // A socket file left behind by a crashed server: nothing listens on it.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());

    let child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("runtime")
        .arg("--listen")
        .arg(format!("unix://{}", socket.display()))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut served = false;
    for _ in 0..200 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let pid = child.id().to_string();
    if !served {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        let out = child.wait_with_output().unwrap();
        panic!(
            "deckhand runtime did not serve {}: {}",
            socket.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!socket.exists(), "socket removed on SIGTERM");
    assert!(
        stderr.contains(&socket.display().to_string()),
        "the log names the socket: {stderr}"
    );
}
