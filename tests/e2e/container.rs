//! The container image of `deploy/Dockerfile`, built and run with podman. Base images cannot be
//! pulled here, so the runtime base is made from this machine's files (the libraries certgate
//! links, CA certificates, the unprivileged user 65532) and the build stage is given the binary
//! the tests built (`--build-context build=…`): what is tested is the image's own layout, user,
//! health check and signal handling, with `certgate demo` inside.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use certgate_e2e::{certgate_bin, eventually, settles};

/// This machine's kernel refuses a container crun's cgroup setup and rlimits above its own:
/// runc, with limits every machine allows, runs anywhere.
const RUN: [&str; 7] = [
    "--runtime",
    "runc",
    "run",
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman is installed (make test installs it)")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn copy_into(root: &Path, file: &Path) {
    let target = root.join(file.strip_prefix("/").unwrap());
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(file, &target).unwrap();
}

/// A base image like a distroless one: the libraries `binary` needs, CA certificates, the user
/// 65532, /tmp; no shell.
fn make_base(binary: &Path, name: &str, dir: &Path) {
    let root = dir.join("base");
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    assert!(ldd.status.success());
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            copy_into(&root, &std::fs::canonicalize(path).unwrap());
            copy_into(&root, Path::new(path));
        }
    }
    copy_into(&root, Path::new("/etc/ssl/certs/ca-certificates.crt"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    for empty in ["tmp", "home/nonroot"] {
        std::fs::create_dir_all(root.join(empty)).unwrap();
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let tarball = dir.join("base.tar");
    std::fs::write(&tarball, tar.stdout).unwrap();
    podman_ok(&["import", tarball.to_str().unwrap(), name]);
}

/// The container's state as podman sees it.
fn inspect(name: &str, format: &str) -> String {
    podman_ok(&["inspect", "--format", format, name])
}

struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = podman(&args);
        }
    }
}

#[test]
fn the_image_runs_the_demo_as_non_root_turns_healthy_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let tag = std::process::id();
    let base = format!("localhost/certgate-test-base:{tag}");
    let image = format!("localhost/certgate-test:{tag}");
    let name = format!("certgate-test-{tag}");
    let _cleanup = Cleanup(vec![
        vec!["rm".into(), "-f".into(), name.clone()],
        vec!["rmi".into(), "-f".into(), image.clone(), base.clone()],
    ]);
    let binary = certgate_bin();
    make_base(&binary, &base, dir.path());

    // The build stage's output, as the Dockerfile's `COPY --from=build` reads it.
    let built = dir.path().join("built");
    std::fs::create_dir_all(built.join("out/usr/local/bin")).unwrap();
    std::fs::create_dir_all(built.join("out/var/lib/certgate")).unwrap();
    std::fs::copy(&binary, built.join("out/usr/local/bin/certgate")).unwrap();
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile");
    podman_ok(&[
        "--runtime",
        "runc",
        "build",
        "--format",
        "docker",
        "--file",
        dockerfile.to_str().unwrap(),
        "--build-context",
        &format!("build={}", built.display()),
        "--build-arg",
        &format!("RUNTIME_IMAGE={base}"),
        "--tag",
        &image,
        context.to_str().unwrap(),
    ]);
    assert_eq!(inspect(&image, "{{.Config.User}}"), "65532:65532");
    let health = inspect(&image, "{{json .HealthCheck.Test}}");
    assert!(health.contains("certgate\",\"healthcheck"), "{health}");

    // The demo keeps its files in a volume the test reads (its CA, to trust the demo).
    let demo = dir.path().join("demo");
    std::fs::create_dir_all(&demo).unwrap();
    std::os::unix::fs::chown(&demo, Some(65532), Some(65532)).unwrap();
    let volume = format!("{}:/var/lib/certgate/demo", demo.display());
    let mut run: Vec<&str> = RUN.to_vec();
    run.extend([
        "--detach",
        "--name",
        &name,
        // The demo listens on loopback.
        "--network",
        "host",
        "--volume",
        &volume,
        "--env",
        "CERTGATE_CONFIG=/var/lib/certgate/demo/certgate.toml",
        &image,
        "demo",
        "--dir",
        "/var/lib/certgate/demo",
    ]);
    podman_ok(&run);

    // It serves the demo organisation: the allow-listed "office network" is admitted.
    let root_ca: PathBuf = demo.join("ca/root.pem");
    let office = || {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                "--interface",
                "127.0.0.2",
                "--cacert",
            ])
            .arg(&root_ca)
            .arg("https://localhost:8443/")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        eventually(Duration::from_secs(60), || office().contains(
            r#""x-certgate-auth":["ip"],"x-certgate-mfa":["none"],"x-certgate-org":["demo"]"#
        )),
        "the demo app answers through the gateway: {}; logs: {}",
        office(),
        podman_ok(&["logs", &name])
    );
    // Files it wrote belong to the unprivileged user, not root.
    let meta = std::fs::metadata(demo.join("certgate.toml")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65532);

    // Its health check turns healthy (podman runs it on demand where no systemd timer does).
    assert!(
        settles(|| podman(&["healthcheck", "run", &name]).status.success()),
        "healthcheck: {}",
        String::from_utf8_lossy(&podman(&["healthcheck", "run", &name]).stderr)
    );
    assert_eq!(inspect(&name, "{{.State.Health.Status}}"), "healthy");

    // SIGTERM (podman stop) ends it cleanly, well before podman would kill it.
    podman_ok(&["stop", "--time", "30", &name]);
    assert_eq!(inspect(&name, "{{.State.ExitCode}}"), "0");
    assert!(!office().contains("x-certgate-auth"));
}
