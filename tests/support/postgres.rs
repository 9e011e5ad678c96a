//! A PostgreSQL server of the test's own (Debian's `postgresql`, 15): a fresh cluster in a
//! temp directory on a free loopback port, started and stopped by the test. PostgreSQL will
//! not run as root, so as root the cluster belongs to the `postgres` user (runuser).

use super::{free_tcp_port, run_bounded, wait_for};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Postgres {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn as_root() -> bool {
    // SAFETY: getuid has no preconditions.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Postgres {
    /// A new, running cluster with a database `ivrd`.
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/setup.sh test)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("/usr/lib/postgresql/*/bin/initdb");
        // Under /tmp, which the postgres user can reach (the target dir may not be).
        let dir =
            std::env::temp_dir().join(format!("ivrd-pg-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = Postgres {
            dir,
            port: free_tcp_port(),
            bin,
        };
        if as_root() {
            let out = Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&pg.dir)
                .output();
            assert!(
                out.map(|o| o.status.success()).unwrap_or(false),
                "chown the cluster dir"
            );
        }
        let init = pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert_eq!(
            init.code,
            Some(0),
            "initdb: {}\n{}",
            init.stdout,
            init.stderr
        );
        pg.up();
        let psql = Command::new(pg.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE ivrd",
            ])
            .output()
            .expect("psql");
        assert!(
            psql.status.success(),
            "{}",
            String::from_utf8_lossy(&psql.stderr)
        );
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ivrd", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn run(&self, tool: &str, args: &[&str]) -> super::Finished {
        let program = self.bin.join(tool);
        let mut cmd = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args);
        run_bounded(cmd, tool, Duration::from_secs(120))
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        let started = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
        assert_eq!(
            started.code,
            Some(0),
            "pg_ctl start: {}\n{}\n{}",
            started.stdout,
            started.stderr,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let ready = wait_for(Duration::from_secs(30), || {
            Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
        assert!(ready.is_some(), "PostgreSQL did not come up");
    }

    /// Stops the server (fast: connections are cut).
    pub fn down(&self) {
        let stopped = self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert_eq!(stopped.code, Some(0), "pg_ctl stop: {}", stopped.stderr);
    }

    /// A query's single value (psql, unaligned).
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "ivrd",
                "-At",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
