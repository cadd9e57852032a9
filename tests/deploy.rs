//! What operators install beside the binary: the systemd units, shell completions and manual
//! pages.

use std::process::Command;

const OISEAU: &str = env!("CARGO_BIN_EXE_oiseau");

fn oiseau(args: &[&str]) -> String {
    let out = Command::new(OISEAU).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn subcommands() -> Vec<String> {
    let help = oiseau(&["--help"]);
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    let service = std::fs::read_to_string(units.join("oiseau.service")).unwrap();
    for line in [
        "SuccessExitStatus=75",
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "EnvironmentFile=/etc/oiseau/oiseau.env",
    ] {
        assert!(service.lines().any(|l| l == line), "{line} missing");
    }
    let timer = std::fs::read_to_string(units.join("oiseau.timer")).unwrap();
    assert!(timer.lines().any(|l| l == "Persistent=true"));
    assert!(timer.lines().any(|l| l == "OnCalendar=*:0/10"));

    // Verified as installed, with the binary where ExecStart expects it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oiseau.service"),
        service.replace("/usr/local/bin/oiseau", OISEAU),
    )
    .unwrap();
    std::fs::write(dir.path().join("oiseau.timer"), timer).unwrap();
    let serve = std::fs::read_to_string(units.join("oiseau-serve.service")).unwrap();
    std::fs::write(
        dir.path().join("oiseau-serve.service"),
        serve.replace("/usr/local/bin/oiseau", OISEAU),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("oiseau.service"))
        .arg(dir.path().join("oiseau.timer"))
        .arg(dir.path().join("oiseau-serve.service"))
        .output()
        .expect("systemd-analyze is installed (scripts/test installs it)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    // An unknown or misspelt key is only a warning: none may name the units.
    assert!(!said.contains("oiseau."), "{said}");
}

#[test]
fn completions_cover_every_command() {
    let commands = subcommands();
    assert!(commands.len() >= 10, "{commands:?}");
    for shell in ["bash", "zsh", "fish"] {
        let script = oiseau(&["completions", shell]);
        for command in &commands {
            assert!(
                script.contains(command.as_str()),
                "{shell}: {command} missing"
            );
        }
    }
    let bash = oiseau(&["completions", "bash"]);
    let check = Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn man_pages_describe_oiseau_and_each_command() {
    let page = oiseau(&["man"]);
    assert!(page.contains(".TH oiseau 1"), "{page}");
    for command in subcommands() {
        assert!(
            page.contains(&format!("oiseau\\-{command}(1)")),
            "{command}"
        );
        let sub = oiseau(&["man", &command]);
        assert!(sub.contains(&format!(".TH oiseau-{command} 1")), "{sub}");
    }
    assert!(oiseau(&["man", "run"]).contains("\\-\\-json"));
    let unknown = Command::new(OISEAU).args(["man", "nope"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}
