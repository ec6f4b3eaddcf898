//! The system file (`conf/sys.properties`): where the job's state lives and how hard the
//! worker may push, with the `slave*` names used before ossimport 2.2.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keys::{self, AT_LEAST_0, Key, to_u32, to_u64};
use super::{ConfigError, ConfigWarning, Loaded, Secret, props};

/// Settings of the process rather than of a job (§6 of the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SysConfig {
    /// Root of logs/, master/, worker/; relative paths are relative to the current directory.
    pub working_dir: PathBuf,
    /// Distributed mode only (SSH to workers), which this version does not have.
    pub worker_user_name: String,
    #[serde(skip)]
    pub worker_password: Secret,
    pub private_key_file: String,
    pub ssh_port: u16,
    /// Files transferred at once.
    pub worker_task_thread_num: u32,
    /// Total bandwidth cap in KB/s; 0 = unlimited.
    pub worker_max_throughput_kbps: u64,
    pub dispatcher_thread_num: u32,
    /// false: skip a file that fails in an unexpected way and go on.
    pub worker_abort_when_uncatched_exception: bool,
    /// Store the file's MD5 as user metadata `x-oss-meta-md5`.
    pub worker_record_md5: bool,
    /// How long the service waits out an outage of the destination or a remote source before
    /// it aborts the job.
    pub worker_max_outage_seconds: u64,
    /// Read for compatibility only: the JVM heap size of the original.
    pub java_heap_max_size: String,
    /// Distributed mode: the NATS server (with JetStream) the master and the workers share,
    /// `nats://host:4222`; empty = standalone.
    pub queue_url: String,
    /// Distributed mode: the names of the streams, consumers and object store begin with it.
    pub queue_stream_prefix: String,
    /// Distributed mode: a task a worker holds without a sign of life for this long is handed
    /// to another worker.
    pub queue_ack_wait_seconds: u64,
    /// Distributed mode: the name a worker reports (its `dispatched/<host>/` folder); blank =
    /// the machine's host name.
    pub worker_host_name: String,
}

type K = Key<SysConfig>;

const KEYS: &[K] = &[
    K::text("workingDir", ".", |c, v| c.working_dir = PathBuf::from(v)),
    K::text("workerUserName", "", |c, v| c.worker_user_name = v).or_old(&["slaveUserName"]),
    K::secret("workerPassword", |c, v| c.worker_password = v).or_old(&["slavePassword"]),
    K::text("privateKeyFile", "", |c, v| c.private_key_file = v),
    K::number("sshPort", "22", (1, 65_535), |c, v| {
        c.ssh_port = u16::try_from(v).unwrap_or(22)
    }),
    K::clamped("workerTaskThreadNum", "60", (1, 1000), |c, v| {
        c.worker_task_thread_num = to_u32(v)
    })
    .or_old(&["slaveTaskThreadNum"]),
    K::number(
        "workerMaxThroughput(KB/s)",
        "100000000",
        AT_LEAST_0,
        |c, v| c.worker_max_throughput_kbps = to_u64(v),
    )
    .or_old(&["slaveMaxThroughput(KB/s)"]),
    K::clamped("dispatcherThreadNum", "1", (1, 64), |c, v| {
        c.dispatcher_thread_num = to_u32(v)
    }),
    K::flag("workerAbortWhenUncatchedException", "false", |c, v| {
        c.worker_abort_when_uncatched_exception = v
    })
    .or_old(&["slaveAbortWhenUncatchedException"]),
    K::flag("workerRecordMd5", "false", |c, v| c.worker_record_md5 = v),
    // Ours: the original spends each file's retries on an outage and fails the files.
    K::number(
        "workerMaxOutageSeconds",
        "3600",
        (1, 30 * 86_400),
        |c, v| c.worker_max_outage_seconds = to_u64(v),
    ),
    // Only the original's JVM launcher reads it; kept so the shipped file reads cleanly.
    K::text("javaHeapMaxSize", "1024m", |c, v| c.java_heap_max_size = v),
    // Ours: distributed mode on NATS JetStream (README "Distributed mode").
    K::checked_text("queueUrl", "", check_queue_url, |c, v| c.queue_url = v),
    K::checked_text("queueStreamPrefix", "OSSIMPORT", check_token, |c, v| {
        c.queue_stream_prefix = v
    }),
    K::number("queueAckWaitSeconds", "60", (2, 86_400), |c, v| {
        c.queue_ack_wait_seconds = to_u64(v)
    }),
    K::checked_text("workerHostName", "", check_token, |c, v| {
        c.worker_host_name = v
    }),
];

fn check_queue_url(v: &str) -> Result<(), String> {
    let ok = ["nats://", "tls://"]
        .iter()
        .any(|s| v.strip_prefix(s).is_some_and(|host| !host.is_empty()));
    if v.is_empty() || ok {
        Ok(())
    } else {
        Err("must be empty (standalone) or the NATS server, like nats://10.0.0.5:4222".into())
    }
}

/// A name that is safe as a NATS subject token and as a folder name.
fn check_token(v: &str) -> Result<(), String> {
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err("may hold only letters, digits, '-' and '_'".into())
    }
}

/// Above this the original's documentation warns of memory use; we allow it but say so.
const MANY_THREADS: u32 = 150;

impl Default for SysConfig {
    /// Every key at its default from the key table.
    fn default() -> Self {
        let mut config = SysConfig {
            working_dir: PathBuf::new(),
            worker_user_name: String::new(),
            worker_password: Secret::default(),
            private_key_file: String::new(),
            ssh_port: 0,
            worker_task_thread_num: 0,
            worker_max_throughput_kbps: 0,
            dispatcher_thread_num: 0,
            worker_abort_when_uncatched_exception: false,
            worker_record_md5: false,
            worker_max_outage_seconds: 0,
            java_heap_max_size: String::new(),
            queue_url: String::new(),
            queue_stream_prefix: String::new(),
            queue_ack_wait_seconds: 0,
            worker_host_name: String::new(),
        };
        keys::apply_defaults(KEYS, &mut config);
        config
    }
}

impl SysConfig {
    /// Reads and parses the system file at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] when the file cannot be read or a value cannot mean anything.
    pub fn load(path: &Path) -> Result<Loaded<SysConfig>, ConfigError> {
        Self::parse_str(&props::read_text(path)?, path)
    }

    /// Parses the text of a system file; `path` is only used in messages.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the line and key of the first value that cannot mean anything.
    pub fn parse_str(text: &str, path: &Path) -> Result<Loaded<SysConfig>, ConfigError> {
        let entries = props::parse_entries(text, path)?;
        let mut config = SysConfig::default();
        let applied = keys::apply(KEYS, &mut config, entries, path)?;
        if config.working_dir.as_os_str().is_empty() {
            config.working_dir = PathBuf::from(".");
        }
        let mut warnings = applied.warnings;
        if config.worker_task_thread_num > MANY_THREADS {
            warnings.push(ConfigWarning {
                path: path.to_path_buf(),
                line: applied.key_lines.get("workerTaskThreadNum").copied(),
                key: "workerTaskThreadNum".to_string(),
                message: format!(
                    "{} threads is more than the {MANY_THREADS} the original recommends; \
                     expect high memory use",
                    config.worker_task_thread_num
                ),
            });
        }
        // Read for the original's files to parse, but without effect here: say so once, at
        // the key's line, instead of ignoring a value the user set.
        let ignored = [
            ("workerUserName", !config.worker_user_name.is_empty()),
            ("workerPassword", !config.worker_password.is_empty()),
            ("privateKeyFile", !config.private_key_file.is_empty()),
            ("sshPort", config.ssh_port != 22),
            ("dispatcherThreadNum", config.dispatcher_thread_num != 1),
        ];
        for (key, set) in ignored {
            if set {
                warnings.push(ConfigWarning {
                    path: path.to_path_buf(),
                    line: applied.key_lines.get(key).copied(),
                    key: key.to_string(),
                    message: "for the original's SSH deployment of workers and its several \
                              dispatchers, which ossimport-rs does not have; it ignores it \
                              (distributed mode starts workers with worker.sh: README \
                              \"Distributed mode\")"
                        .to_string(),
                });
            }
        }
        Ok(Loaded { config, warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Loaded<SysConfig> {
        SysConfig::parse_str(text, Path::new("conf/sys.properties")).unwrap()
    }

    #[test]
    fn distributed_mode_settings_are_said_to_be_ignored() {
        let loaded = parse(
            "workerUserName=admin\nworkerPassword=secret-pw\nprivateKeyFile=/k\nsshPort=2222\n\
             dispatcherThreadNum=4\n",
        );
        let keys: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "workerUserName",
                "workerPassword",
                "privateKeyFile",
                "sshPort",
                "dispatcherThreadNum"
            ]
        );
        assert_eq!(loaded.warnings[3].line, Some(4));
        assert!(loaded.warnings[0].message.contains("ignores it"));
        let shown = format!("{:?}", loaded.warnings);
        assert!(!shown.contains("secret-pw"), "{shown}");
        // The shipped values (blank, 22, 1) are not warned about.
        let quiet = parse("workerUserName=\nworkerPassword=\ndispatcherThreadNum=1\n");
        assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
    }

    #[test]
    fn shipped_sys_properties() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conf/sys.properties");
        let loaded = SysConfig::load(&path).unwrap();
        assert_eq!(loaded.warnings, vec![]);
        let c = loaded.config;
        assert_eq!(c.working_dir, PathBuf::from("."));
        assert_eq!(c.worker_task_thread_num, 60);
        assert_eq!(c.worker_max_throughput_kbps, 100_000_000);
        assert_eq!(c.dispatcher_thread_num, 1);
        // The shipped line is `workerAbortWhenUncatchedException=false  `.
        assert!(!c.worker_abort_when_uncatched_exception);
        assert!(!c.worker_record_md5);
        assert_eq!(c.java_heap_max_size, "1024m");
        assert_eq!(c.ssh_port, 22);
        assert!(c.worker_password.is_empty());
        assert_eq!(c, SysConfig::default());
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let loaded = parse("");
        assert!(loaded.warnings.is_empty());
        let c = loaded.config;
        assert_eq!(c, SysConfig::default());
        assert_eq!(c.working_dir, PathBuf::from("."));
        assert_eq!(
            (c.worker_task_thread_num, c.worker_max_throughput_kbps),
            (60, 100_000_000)
        );
        assert_eq!((c.dispatcher_thread_num, c.ssh_port), (1, 22));
    }

    #[test]
    fn old_slave_names_still_work_with_a_warning() {
        let loaded = parse(
            "slaveUserName=ops\nslavePassword=pa55word\nslaveTaskThreadNum=20\n\
             slaveMaxThroughput(KB/s)=500\nslaveAbortWhenUncatchedException=true\n",
        );
        let c = &loaded.config;
        assert_eq!(c.worker_user_name, "ops");
        assert_eq!(c.worker_password.expose(), "pa55word");
        assert_eq!(c.worker_task_thread_num, 20);
        assert_eq!(c.worker_max_throughput_kbps, 500);
        assert!(c.worker_abort_when_uncatched_exception);
        // Five old names, and the two SSH settings that standalone mode ignores.
        assert_eq!(loaded.warnings.len(), 7);
        assert_eq!(loaded.warnings[5].key, "workerUserName");
        let w = &loaded.warnings[2];
        assert_eq!((w.key.as_str(), w.line), ("slaveTaskThreadNum", Some(3)));
        assert!(
            w.message.contains("old name of `workerTaskThreadNum`"),
            "{w}"
        );
        assert!(!format!("{loaded:?}").contains("pa55word"));
    }

    #[test]
    fn new_name_wins_over_old_in_either_order() {
        for text in [
            "workerTaskThreadNum=10\nslaveTaskThreadNum=20\n",
            "slaveTaskThreadNum=20\nworkerTaskThreadNum=10\n",
        ] {
            let loaded = parse(text);
            assert_eq!(loaded.config.worker_task_thread_num, 10, "{text}");
            assert!(
                loaded.warnings.iter().any(|w| w.key == "slaveTaskThreadNum"
                    && w.message.contains("ignored because `workerTaskThreadNum`")),
                "{:?}",
                loaded.warnings
            );
        }
    }

    #[test]
    fn thread_counts_are_clamped_and_warned() {
        let loaded = parse("workerTaskThreadNum=5000\ndispatcherThreadNum=0\n");
        assert_eq!(loaded.config.worker_task_thread_num, 1000);
        assert_eq!(loaded.config.dispatcher_thread_num, 1);
        let keys: Vec<_> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "workerTaskThreadNum",
                "dispatcherThreadNum",
                "workerTaskThreadNum"
            ]
        );
        let loaded = parse("workerTaskThreadNum=200\n");
        assert_eq!(loaded.config.worker_task_thread_num, 200);
        assert!(loaded.warnings[0].message.contains("memory"));
    }

    #[test]
    fn bad_values_are_located() {
        let err = SysConfig::parse_str("# c\nsshPort=70000\n", Path::new("s.p")).unwrap_err();
        assert_eq!((err.line, err.key.as_deref()), (Some(2), Some("sshPort")));
        assert!(err.message.contains("expected 1 to 65535"), "{err}");
        let err = SysConfig::parse_str("workerRecordMd5=yes\n", Path::new("s.p")).unwrap_err();
        assert!(err.message.contains("expected true or false"), "{err}");
        let err =
            SysConfig::parse_str("workerMaxThroughput(KB/s)=-1\n", Path::new("s.p")).unwrap_err();
        assert!(err.message.contains("expected 0 or more"), "{err}");
    }

    #[test]
    fn password_never_in_debug_or_warnings() {
        let loaded = parse("workerPassword=s3cr3t\nworkerPassword=s3cr3t2\nbogus=1\n");
        assert_eq!(loaded.config.worker_password.expose(), "s3cr3t2");
        let shown = format!("{loaded:?} {}", loaded.warnings.len());
        assert!(!shown.contains("s3cr3t"), "{shown}");
        for w in &loaded.warnings {
            assert!(!w.to_string().contains("s3cr3t"));
        }
    }
}
