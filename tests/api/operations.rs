//! Operating the real binary: how it treats the database file (operator
//! mistakes, another application's file, an upgrade that fails, read-only
//! files), `souk backup -`, each subcommand's `--help`, and the `souk user`
//! commands beside a running server, which must see each change at once.
//!
//! Permission cases need a user the permissions apply to: run as root, the
//! commands under test run as `nobody` through `setpriv` (util-linux); where
//! that is missing too, those cases say so and are skipped.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::binary::{Process, Served, run, run_bytes, souk};
use crate::client::{hashing_request, log_in_at, member_at, request};
use crate::helpers::TempDir;

const PASSWORD: &str = "operations password";

/// Runs `command` and checks it failed as an operator's mistake: exit 2 and
/// one line on stderr, `souk: …`, naming `path` and the cause, not
/// `internal`. Returns the line.
fn assert_operator_error(command: Command, path: &Path, cause: &str) -> String {
    let (status, out, err) = run(command);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        status.code(),
        Some(2),
        "exit status; stderr: {err}; stdout: {out}"
    );
    assert_eq!(lines.len(), 1, "one line on stderr, got: {err}");
    let line = lines[0];
    assert!(line.starts_with("souk: "), "{line}");
    assert!(!line.contains("internal"), "{line}");
    assert!(
        line.contains(&path.display().to_string()),
        "names {path:?}: {line}"
    );
    assert!(line.contains(cause), "says `{cause}`: {line}");
    line.to_owned()
}

/// The names in `dir`.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("listing a directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn with_db(mut command: Command, db: &Path) -> Command {
    command.env("SOUK_DB", db);
    command
}

/// `souk ARGS` on `db`, run in `dir` (so a relative path lands there).
fn souk_args(dir: &TempDir, db: &Path, args: &[&str]) -> Command {
    let mut command = with_db(souk(dir), db);
    command.args(args).current_dir(&dir.path);
    command
}

/// `souk user create --username alice` on `db` (which it creates).
fn create_alice(dir: &TempDir, db: &Path) {
    let mut create = souk_args(dir, db, &["user", "create", "--username", "alice"]);
    create.env("SOUK_PASSWORD", PASSWORD);
    let (status, out, err) = run(create);
    assert!(status.success(), "{out}{err}");
}

/// Whether this process runs as root (a file it makes is root's).
fn is_root(dir: &TempDir) -> bool {
    let probe = dir.path.join("uid-probe");
    std::fs::write(&probe, b"").expect("writing a probe file");
    let uid = std::fs::metadata(&probe).expect("probe metadata").uid();
    std::fs::remove_file(&probe).expect("removing the probe");
    uid == 0
}

/// `souk ARGS` on `db` as a user file permissions apply to: this one, or
/// `nobody` when this is root. `None` when root and no `setpriv`.
fn souk_unprivileged(dir: &TempDir, db: &Path, args: &[&str]) -> Option<Command> {
    if !is_root(dir) {
        return Some(souk_args(dir, db, args));
    }
    let setpriv_works = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !setpriv_works {
        eprintln!("skipped: running as root without setpriv, permissions do not apply");
        return None;
    }
    let template = souk(dir);
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(template.get_program())
        .args(args)
        .current_dir(&dir.path);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .env("SOUK_DB", db)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    Some(command)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A migrated, closed souk database at `db` (its -wal and -shm removed by
/// the last connection; the lock file `migrate` takes removed too, so a
/// test sees only what later commands make).
fn migrated(dir: &TempDir, db: &Path) {
    let (status, out, err) = run(souk_args(dir, db, &["migrate"]));
    assert!(status.success(), "migrate: {out}{err}");
    let mut lock = db.as_os_str().to_owned();
    lock.push(".lock");
    std::fs::remove_file(PathBuf::from(lock)).expect("removing the lock file");
}

/// `PRAGMA user_version` of `db`, read through a read-write connection: its
/// close removes the -wal and -shm files it made (a read-only one cannot).
fn user_version(db: &Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .expect("opening");
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version")
}

/// In `dir`: a text file, a database newer than this souk, a good database
/// and a file a backup must not overwrite; their paths in that order.
fn operator_mistake_files(dir: &TempDir) -> [PathBuf; 4] {
    let text = dir.path.join("notes.txt");
    std::fs::write(
        &text,
        "not a database, just some text long enough to be read\n".repeat(20),
    )
    .expect("writing a text file");
    let newer = dir.path.join("newer.db");
    migrated(dir, &newer);
    rusqlite::Connection::open(&newer)
        .and_then(|c| c.pragma_update(None, "user_version", 999))
        .expect("making the database newer");
    let good = dir.path.join("good.db");
    migrated(dir, &good);
    let target = dir.path.join("target.db");
    std::fs::write(&target, b"precious").expect("writing the target");
    [text, newer, good, target]
}

/// `souk check` checks this schema's invariants: a database older than this
/// souk (not migrated yet) is refused before any of them runs.
#[test]
fn souk_check_refuses_a_database_older_than_itself() {
    let dir = TempDir::new();
    let older = dir.path.join("older.db");
    migrated(&dir, &older);
    rusqlite::Connection::open(&older)
        .and_then(|c| c.pragma_update(None, "user_version", souk::store::SCHEMA_VERSION - 1))
        .expect("making the database older");
    assert_operator_error(
        souk_args(&dir, &older, &["check"]),
        &older,
        "older than this souk",
    );
}

#[test]
fn operator_mistakes_exit_2_with_one_line_naming_the_path_and_the_cause() {
    let dir = TempDir::new();
    let missing_dir = dir.path.join("no-such-dir");
    let db = missing_dir.join("souk.db");
    let absent = dir.path.join("absent.db");
    let [text, newer, good, target] = operator_mistake_files(&dir);
    let target_arg = target.display().to_string();
    let here = &dir.path;
    // (database, arguments, the path the line names, the cause it says)
    #[rustfmt::skip]
    let mistakes: [(&Path, &[&str], &Path, &str); 12] = [
        (&db, &["serve"], &missing_dir, "does not exist"),
        (&db, &[], &missing_dir, "does not exist"),
        (here, &["serve"], here, "is a directory"),
        (here, &["check"], here, "is a directory"),
        (&text, &["serve"], &text, "not a SQLite database"),
        (&text, &["check"], &text, "not a SQLite database"),
        (&absent, &["check"], &absent, "no database"),
        (&absent, &["backup", "copy.db"], &absent, "no database"),
        (&absent, &["user", "suspend", "bob"], &absent, "no database"),
        (&newer, &["serve"], &newer, "newer than this souk"),
        (&newer, &["migrate"], &newer, "newer than this souk"),
        (&good, &["backup", &target_arg], &target, "exists"),
    ];
    for (db, args, named, cause) in mistakes {
        assert_operator_error(souk_args(&dir, db, args), named, cause);
    }
    assert!(
        !missing_dir.exists(),
        "nothing is created for a missing directory"
    );
    assert_eq!(user_version(&newer), 999);
    assert_eq!(std::fs::read(&target).expect("reading"), b"precious");
    assert_eq!(
        entries(&dir.path),
        ["good.db", "newer.db", "notes.txt", "target.db"]
            .map(String::from)
            .into(),
        "no -wal, -shm or .lock file is left by a refusal"
    );
}

#[test]
fn an_address_in_use_is_an_operator_error_printed_once() {
    let dir = TempDir::new();
    let served = Served::start(&dir);
    let other = TempDir::new();
    let mut command = souk(&other);
    // The database is made before the address is tried: its info lines are
    // not what is counted.
    command
        .env("SOUK_ADDR", served.addr.to_string())
        .env("RUST_LOG", "warn");
    let addr = served.addr.to_string();
    assert_operator_error(command, Path::new(&addr), "cannot listen");
    served.stop();
}

#[test]
fn permission_problems_and_read_only_files_are_named_as_such() {
    let dir = TempDir::new();
    let shelf = dir.path.join("shelf");
    std::fs::create_dir(&shelf).expect("mkdir");
    let db = shelf.join("souk.db");
    migrated(&dir, &db);
    chmod(&db, 0o444);
    chmod(&shelf, 0o555);
    let Some(serve) = souk_unprivileged(&dir, &db, &["serve"]) else {
        chmod(&shelf, 0o755);
        return;
    };
    assert_operator_error(serve, &db, "read-only");
    let migrate = souk_unprivileged(&dir, &db, &["migrate"]).expect("as above");
    assert_operator_error(migrate, &db, "read-only");
    // A writable file in a directory that is not: its -wal cannot be made.
    chmod(&db, 0o666);
    let serve = souk_unprivileged(&dir, &db, &["serve"]).expect("as above");
    assert_operator_error(serve, &shelf, "permission denied");
    chmod(&shelf, 0o755);
    // A file the user may not even read.
    chmod(&db, 0o600);
    let check = souk_unprivileged(&dir, &db, &["check"]).expect("as above");
    assert_operator_error(check, &db, "permission denied");
    chmod(&db, 0o644);
}

#[test]
fn check_and_backup_work_on_a_file_the_user_may_only_read() {
    let dir = TempDir::new();
    let shelf = dir.path.join("shelf");
    std::fs::create_dir(&shelf).expect("mkdir");
    let db = shelf.join("souk.db");
    migrated(&dir, &db);
    chmod(&db, 0o444);
    chmod(&shelf, 0o555);
    let before = std::fs::read(&db).expect("reading");
    let out_dir = dir.path.join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    chmod(&out_dir, 0o777);
    let copy = out_dir.join("copy.db");
    let copy_arg = copy.display().to_string();
    let commands = [
        souk_unprivileged(&dir, &db, &["check"]),
        souk_unprivileged(&dir, &db, &["backup", &copy_arg]),
        souk_unprivileged(&dir, &db, &["user", "list"]),
    ];
    for command in commands {
        let Some(command) = command else {
            chmod(&shelf, 0o755);
            return;
        };
        let (status, out, err) = run(command);
        assert!(status.success(), "{status:?}: {out}{err}");
    }
    assert_eq!(
        std::fs::read(&db).expect("reading"),
        before,
        "the file is unchanged"
    );
    assert_eq!(
        entries(&shelf),
        ["souk.db".to_owned()].into(),
        "nothing made beside it"
    );
    chmod(&shelf, 0o755);
    // The backup is a plain database that reads back on read-only media too.
    assert_eq!(user_version(&copy), i64::from(souk::store::SCHEMA_VERSION));
    chmod(&copy, 0o444);
    chmod(&out_dir, 0o555);
    let check_copy = souk_unprivileged(&dir, &copy, &["check"]).expect("as above");
    let (status, out, err) = run(check_copy);
    chmod(&out_dir, 0o755);
    assert!(status.success(), "check of the backup: {out}{err}");
    assert!(out.starts_with("ok"), "{out}");
}

#[test]
fn a_sqlite_file_of_another_application_is_refused_with_its_bytes_unchanged() {
    // One in rollback-journal mode, one already in WAL mode.
    for journal_mode in ["delete", "wal"] {
        let dir = TempDir::new();
        let foreign = dir.path.join("other.db");
        {
            let conn = rusqlite::Connection::open(&foreign).expect("creating");
            let mode: String = conn
                .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
                    r.get(0)
                })
                .expect("journal mode");
            assert_eq!(mode, journal_mode);
            conn.execute_batch(
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
                 INSERT INTO notes (body) VALUES ('keep me');",
            )
            .expect("filling");
        }
        let before = std::fs::read(&foreign).expect("reading");
        let cases: [&[&str]; 6] = [
            &["serve"],
            &["migrate"],
            &["check"],
            &["backup", "copy.db"],
            &["user", "create", "--username", "admin"],
            &["user", "list"],
        ];
        for args in cases {
            let mut command = souk_args(&dir, &foreign, args);
            command.env("SOUK_PASSWORD", PASSWORD);
            assert_operator_error(command, &foreign, "another application");
        }
        assert_eq!(
            std::fs::read(&foreign).expect("reading"),
            before,
            "{journal_mode}"
        );
        assert_eq!(
            entries(&dir.path),
            ["other.db".to_owned()].into(),
            "{journal_mode}: no -wal, -shm, -journal or .lock file beside it, no copy"
        );
    }
}

#[test]
fn a_failing_upgrade_leaves_the_file_as_it_was() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    {
        // Version 1 (meta), and a table of the operator's own that
        // migration 4 wants to create: steps 2 and 3 succeed, then 4 fails.
        let conn = rusqlite::Connection::open(&db).expect("creating");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT, WITHOUT ROWID;
             CREATE TABLE escrows (note TEXT);
             PRAGMA user_version = 1;",
        )
        .expect("filling");
    }
    let before = std::fs::read(&db).expect("reading");
    let line = assert_operator_error(souk_args(&dir, &db, &["migrate"]), &db, "migration 4");
    assert!(line.contains("nothing was changed"), "{line}");
    assert!(!line.contains("CREATE"), "no SQL in the message: {line}");
    assert_operator_error(souk_args(&dir, &db, &["serve"]), &db, "migration 4");
    assert_eq!(
        std::fs::read(&db).expect("reading"),
        before,
        "bytes unchanged"
    );
    assert_eq!(user_version(&db), 1);
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("tables");
    assert_eq!(tables, ["escrows", "meta"], "steps 2 and 3 were undone too");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "delete", "not switched to WAL");
}

#[test]
fn the_start_log_names_the_absolute_path_and_whether_it_was_created() {
    let dir = TempDir::new();
    let relative = Path::new("fresh.db");
    let absolute = std::fs::canonicalize(&dir.path)
        .expect("canonical")
        .join("fresh.db");
    let wanted = format!("database {}", absolute.display());
    for created in [true, false] {
        let mut command = souk(&dir);
        command.env("SOUK_DB", relative).current_dir(&dir.path);
        let process = Process::spawn(command);
        let (seen, found) = process.read_log_until(crate::binary::PROCESS_TIMEOUT, |l| {
            l.contains("listening on")
        });
        assert!(found, "{seen:#?}");
        let line = seen
            .iter()
            .find(|l| l.contains(&wanted))
            .unwrap_or_else(|| panic!("no line naming {wanted}: {seen:#?}"));
        assert_eq!(line.contains("new file created"), created, "{line}");
        process.terminate();
    }
}

#[test]
fn backup_dash_writes_a_valid_database_to_stdout() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    create_alice(&dir, &db);
    let served = Served::start(&dir);
    let (status, bytes, err) = run_bytes(souk_args(&dir, &db, &["backup", "-"]));
    assert!(status.success(), "{err}");
    assert!(
        bytes.starts_with(b"SQLite format 3\0"),
        "{} bytes",
        bytes.len()
    );
    assert!(!dir.path.join("-").exists(), "no file named -");
    let copy = dir.path.join("from-stdout.db");
    std::fs::write(&copy, &bytes).expect("writing the copy");
    let conn = rusqlite::Connection::open(&copy).expect("opening the copy");
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(verdict, "ok");
    let alice: i64 = conn
        .query_row(
            "SELECT count(*) FROM users WHERE username = 'alice'",
            [],
            |r| r.get(0),
        )
        .expect("counting");
    assert_eq!(alice, 1);
    served.stop();
}

#[test]
fn each_subcommand_help_lists_only_its_own_options() {
    let dir = TempDir::new();
    let help = |args: &[&str]| -> String {
        let mut command = souk(&dir);
        command.args(args).arg("--help");
        let (status, out, err) = run(command);
        assert!(status.success(), "{args:?}: {err}");
        out
    };
    let serve = help(&["serve"]);
    assert!(
        serve.contains("--max-body") && serve.contains("--db"),
        "{serve}"
    );
    let cases: [(&[&str], &[&str]); 10] = [
        (&["migrate"], &[]),
        (&["check"], &[]),
        (&["backup"], &["<PATH>", "standard output"]),
        (
            &["user", "create"],
            &["--username", "--admin", "Make the user an admin"],
        ),
        (&["user", "list"], &[]),
        (&["user", "passwd"], &["<NAME>", "stdin"]),
        (&["user", "set-role"], &["<ROLE>", "admin, user"]),
        (&["user", "suspend"], &["<NAME>"]),
        (&["user", "reactivate"], &["<NAME>"]),
        (&["user", "unlock"], &["<NAME>"]),
    ];
    for (args, wanted) in cases {
        let text = help(args);
        assert!(text.contains("--db"), "{args:?}: {text}");
        for serve_only in ["--max-body", "--addr", "--workers", "--cache-timeout"] {
            assert!(
                !text.contains(serve_only),
                "{args:?} shows {serve_only}: {text}"
            );
        }
        for word in wanted {
            assert!(text.contains(word), "{args:?} lacks {word}: {text}");
        }
        // Every argument and option has a description.
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with(['<', '-']))
        {
            assert!(line.trim().contains("  "), "{args:?}: undescribed `{line}`");
        }
    }
}

/// `souk user ARGS` on the served database; must succeed.
fn user_command(dir: &TempDir, db: &Path, args: &[&str], password: Option<&str>) -> String {
    let mut command = souk_args(dir, db, &[&["user"], args].concat());
    if let Some(password) = password {
        command.env("SOUK_PASSWORD", password);
    }
    let (status, out, err) = run(command);
    assert!(
        status.success(),
        "souk user {args:?}: {status:?}\n{out}\n{err}"
    );
    out
}

fn status_of(addr: std::net::SocketAddr, path: &str, token: &str) -> u16 {
    request(addr, "GET", path, Some(token), None, &[]).status
}

fn login_status(addr: std::net::SocketAddr, username: &str, password: &str) -> u16 {
    let body = json!({"username": username, "password": password});
    hashing_request(addr, "POST", "/api/v1/sessions", None, &body).status
}

#[test]
fn user_commands_beside_a_running_server_take_effect_at_once() {
    let dir = TempDir::new();
    let db: PathBuf = dir.path.join("souk.db");
    let served = Served::start(&dir);
    let addr = served.addr;
    let alice = member_at(addr, "alice", PASSWORD);
    let bob = member_at(addr, "bob", PASSWORD);
    register_only(addr, "carol");

    let list = user_command(&dir, &db, &["list"], None);
    for name in ["alice", "bob", "carol"] {
        assert!(
            list.lines()
                .any(|l| l.contains(&format!("\t{name}\tuser\tactive\t"))),
            "{list}"
        );
    }

    // A role change is seen by the very next request, on the same session
    // (whose user is cached by now).
    let admin_route = "/api/v1/admin/stats/users";
    assert_eq!(status_of(addr, "/api/v1/users/me", &alice.token), 200);
    assert_eq!(status_of(addr, admin_route, &alice.token), 403);
    user_command(&dir, &db, &["set-role", "alice", "admin"], None);
    assert_eq!(status_of(addr, admin_route, &alice.token), 200);
    user_command(&dir, &db, &["set-role", "alice", "user"], None);
    assert_eq!(status_of(addr, admin_route, &alice.token), 403);

    // Suspension ends the sessions at once; reactivation lets bob log in.
    assert_eq!(status_of(addr, "/api/v1/users/me", &bob.token), 200);
    user_command(&dir, &db, &["suspend", "bob"], None);
    assert_eq!(status_of(addr, "/api/v1/users/me", &bob.token), 401);
    assert_eq!(login_status(addr, "bob", PASSWORD), 401);
    user_command(&dir, &db, &["reactivate", "bob"], None);
    let bob = log_in_at(addr, "bob", PASSWORD);
    assert_eq!(status_of(addr, "/api/v1/users/me", &bob.token), 200);

    // A new password ends the old sessions; only the new password logs in.
    let new_password = "a brand new password";
    user_command(&dir, &db, &["passwd", "alice"], Some(new_password));
    assert_eq!(status_of(addr, "/api/v1/users/me", &alice.token), 401);
    assert_eq!(login_status(addr, "alice", PASSWORD), 401);
    assert_eq!(login_status(addr, "alice", new_password), 201);

    // A lockout lives in the server's memory; unlock reaches it.
    let mut locked = false;
    for _ in 0..20 {
        if login_status(addr, "carol", "wrong password!") == 429 {
            locked = true;
            break;
        }
    }
    assert!(locked, "carol got locked out");
    assert_eq!(login_status(addr, "carol", PASSWORD), 429);
    user_command(&dir, &db, &["unlock", "carol"], None);
    assert_eq!(login_status(addr, "carol", PASSWORD), 201);

    // Unknown names are the operator's mistake.
    assert_operator_error(
        souk_args(&dir, &db, &["user", "suspend", "nobody_here"]),
        Path::new("nobody_here"),
        "no user",
    );
    served.stop();
}

fn register_only(addr: std::net::SocketAddr, username: &str) {
    crate::client::register_at(addr, username, PASSWORD);
}

#[test]
fn backups_are_readable_by_their_owner_only_and_leave_nothing_behind() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    migrated(&dir, &db);
    let out_dir = dir.path.join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let copy = out_dir.join("copy.db");
    let command = souk_args(&dir, &db, &["backup", &copy.display().to_string()]);
    // A permissive umask: the mode must not depend on the caller's.
    let (status, out, err) = run(umask_0(command));
    assert!(status.success(), "{out}{err}");
    let mode = std::fs::metadata(&copy).expect("the copy").mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup's mode is {mode:o}");
    assert_eq!(
        entries(&out_dir),
        ["copy.db".to_owned()].into(),
        "no partial or journal file beside it"
    );
    // `backup -` stages its copy in a private directory under TMPDIR and
    // removes it.
    let tmp = dir.path.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let mut command = souk_args(&dir, &db, &["backup", "-"]);
    command.env("TMPDIR", &tmp);
    let (status, bytes, err) = run_bytes(umask_0(command));
    assert!(status.success(), "{err}");
    assert!(bytes.starts_with(b"SQLite format 3\0"));
    assert!(
        entries(&tmp).is_empty(),
        "left in TMPDIR: {:?}",
        entries(&tmp)
    );
}

/// `command` run through `sh -c 'umask 0; exec …'`.
fn umask_0(command: Command) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("umask 0; exec \"$0\" \"$@\"")
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(dir) = command.get_current_dir() {
        shell.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    shell
}

#[test]
fn user_commands_never_migrate_and_migrate_refuses_a_served_database() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    create_alice(&dir, &db);
    // A server holds the database: `souk migrate` must not upgrade under it.
    let served = Served::start(&dir);
    let line = assert_operator_error(souk_args(&dir, &db, &["migrate"]), &db, "in use");
    assert!(line.contains("stop the server"), "{line}");
    served.stop();
    // A database one schema version behind this binary (as a newer binary
    // beside an older server would find it): every `user` command refuses
    // and changes nothing.
    let behind = i64::from(souk::store::SCHEMA_VERSION) - 1;
    open_rw(&db)
        .pragma_update(None, "user_version", behind)
        .expect("setting user_version");
    let before = std::fs::read(&db).expect("reading");
    let cases: [&[&str]; 4] = [
        &["user", "suspend", "alice"],
        &["user", "passwd", "alice"],
        &["user", "unlock", "alice"],
        &["user", "create", "--username", "bob"],
    ];
    for args in cases {
        let mut command = souk_args(&dir, &db, args);
        command.env("SOUK_PASSWORD", PASSWORD);
        let line =
            assert_operator_error(command, &db, "run `souk migrate` with the server stopped");
        assert!(line.contains(&format!("schema version {behind}")), "{line}");
    }
    assert_eq!(
        std::fs::read(&db).expect("reading"),
        before,
        "bytes unchanged"
    );
    assert_eq!(user_version(&db), behind);
}

/// A read-write connection whose close removes the -wal and -shm it made.
fn open_rw(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .expect("opening")
}

/// Another application's database as a crash leaves it, at `dir/NAME`:
/// its main file, and beside it a WAL holding commits not yet in the main
/// file (`wal`) or a hot rollback journal whose transaction already
/// changed pages of the main file (`journal`). Returns the paths of the
/// database and of the file beside it.
fn crashed_foreign_database(dir: &Path, mode: &str) -> (PathBuf, PathBuf) {
    let live = dir.join("live.db");
    let conn = rusqlite::Connection::open(&live).expect("creating");
    let journal_mode = if mode == "wal" { "wal" } else { "delete" };
    let _: String = conn
        .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
            r.get(0)
        })
        .expect("journal mode");
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint = 0;
         PRAGMA cache_size = 8;
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes (body) VALUES ('keep me');",
    )
    .expect("filling");
    let insert_many =
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO notes (body) SELECT printf('%.1000c', 'x') FROM n";
    let suffix = if mode == "wal" {
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpointing");
        // Committed, but only in the WAL.
        conn.execute_batch(insert_many).expect("writing to the WAL");
        "-wal"
    } else {
        // A transaction too big for the page cache spills changed pages
        // into the main file while it is still open: the journal is hot.
        conn.execute_batch("BEGIN").expect("begin");
        conn.execute_batch(insert_many)
            .expect("writing in the transaction");
        "-journal"
    };
    let db = dir.join("foreign.db");
    let beside = dir.join(format!("foreign.db{suffix}"));
    std::fs::copy(&live, &db).expect("copying the main file");
    std::fs::copy(dir.join(format!("live.db{suffix}")), &beside).expect("copying the log");
    drop(conn);
    for name in ["live.db", "live.db-wal", "live.db-shm", "live.db-journal"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    (db, beside)
}

#[test]
fn a_crashed_database_of_another_application_is_refused_without_recovering_it() {
    for mode in ["wal", "journal"] {
        let dir = TempDir::new();
        let (foreign, beside) = crashed_foreign_database(&dir.path, mode);
        let before = (
            std::fs::read(&foreign).expect("reading"),
            std::fs::read(&beside).expect("reading"),
        );
        assert!(!before.1.is_empty(), "{mode}: the log holds changes");
        let cases: [&[&str]; 6] = [
            &["serve"],
            &["migrate"],
            &["check"],
            &["backup", "copy.db"],
            &["user", "list"],
            &["user", "suspend", "alice"],
        ];
        for args in cases {
            let mut command = souk_args(&dir, &foreign, args);
            command.env("SOUK_PASSWORD", PASSWORD);
            assert_operator_error(command, &foreign, "another application");
        }
        let after = (
            std::fs::read(&foreign).expect("reading"),
            std::fs::read(&beside).expect("reading"),
        );
        assert!(after.0 == before.0, "{mode}: the main file is unchanged");
        assert!(
            after.1 == before.1,
            "{mode}: the log beside it is unchanged"
        );
        let beside_name = beside
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            entries(&dir.path),
            ["foreign.db".to_owned(), beside_name].into(),
            "{mode}: nothing made beside it"
        );
    }
}

#[test]
fn check_exits_3_on_violated_invariants_and_no_command_panics_on_a_closed_stdout() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    create_alice(&dir, &db);
    let (status, out, _) = run(souk_args(&dir, &db, &["check"]));
    assert_eq!(status.code(), Some(0), "{out}");
    // Money from nowhere: a balance no deposit explains.
    open_rw(&db)
        .execute(
            "INSERT INTO accounts (user_id, currency, available) \
             SELECT id, 'btc', 5 FROM users WHERE username = 'alice'",
            [],
        )
        .expect("breaking the ledger");
    let (status, out, err) = run(souk_args(&dir, &db, &["check"]));
    assert_eq!(status.code(), Some(3), "{out}{err}");
    assert!(out.contains("problem: "), "{out}");
    // Reports to a stdout that is already closed: an error, not a panic (101).
    let copy = dir.path.join("copy.db").display().to_string();
    let cases: [&[&str]; 4] = [
        &["check"],
        &["migrate"],
        &["backup", &copy],
        &["user", "list"],
    ];
    for args in cases {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let mut command = souk_args(&dir, &db, args);
        command.stdout(writer);
        let (status, _, err) = run_closed_stdout(command);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("standard output"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// `run` for a command whose stdout was set by the caller: status, no
/// stdout, stderr.
fn run_closed_stdout(mut command: Command) -> (std::process::ExitStatus, (), String) {
    use std::io::Read;
    let mut child = command.spawn().expect("starting souk");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    (crate::binary::wait_with_timeout(&mut child), (), err)
}

#[test]
fn read_only_commands_refuse_a_journal_holding_changes_rather_than_roll_it_back() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    migrated(&dir, &db);
    // What a write interrupted in rollback-journal mode leaves: reading the
    // database would roll it back into the file.
    let journal = dir.path.join("souk.db-journal");
    std::fs::write(&journal, vec![0xd9; 4096]).expect("writing a journal");
    let before = std::fs::read(&db).expect("reading");
    for args in [&["check"][..], &["user", "list"], &["backup", "copy.db"]] {
        assert_operator_error(souk_args(&dir, &db, args), &db, "-journal");
    }
    assert_eq!(
        std::fs::read(&db).expect("reading"),
        before,
        "bytes unchanged"
    );
    assert_eq!(std::fs::read(&journal).expect("the journal").len(), 4096);
    assert!(!dir.path.join("copy.db").exists());
}
