//! The job file (`conf/local_job.cfg`): its key table and the typed [`JobConfig`] read from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keys::{self, AT_LEAST_0, AT_LEAST_1, Key, to_u32, to_u64};
use super::{ConfigError, ConfigWarning, Loaded, Secret, format_size, props};

pub use super::words::{AuditMode, JobType, ObjectMetaMode, SrcType};

/// One migration job, every key of §5 of the reference typed. Built only by reading a file
/// (or [`Default`]); the rest of the crate never sees the raw strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobConfig {
    pub is_incremental: bool,
    /// Seconds between rescans in incremental mode.
    pub incremental_mode_interval: u64,
    pub src_type: SrcType,
    #[serde(skip)]
    pub src_access_key: Secret,
    #[serde(skip)]
    pub src_secret_key: Secret,
    pub src_domain: String,
    pub src_bucket: String,
    pub src_prefix: String,
    #[serde(skip)]
    pub dest_access_key: Secret,
    #[serde(skip)]
    pub dest_secret_key: Secret,
    pub dest_domain: String,
    pub dest_bucket: String,
    pub dest_prefix: String,
    pub app_id: u64,
    pub is_download_from_cdn: bool,
    pub cdn_domain: String,
    pub http_list_file_path: String,
    /// `<size>:<md5>` of the http list when it was submitted (not a key of the file):
    /// the list's lines are the job's listing, so it must not change under a submitted job.
    #[serde(default)]
    pub http_list_stamp: String,
    pub http_prefix_column: u32,
    pub relative_path_column: u32,
    pub job_name: String,
    pub job_type: JobType,
    /// Unix seconds; only files modified after it are imported (0: all).
    pub import_since: i64,
    /// Unix seconds; audit skips files modified after it (0: off).
    pub last_modify: i64,
    pub is_skip_exist_file: bool,
    pub task_object_count_limit: u64,
    pub task_object_size_limit: u64,
    pub scan_thread_count: u32,
    pub max_multi_thread_scan_depth: u32,
    pub upload_thread_num_per_large_file: u32,
    pub multipart_upload_threshold: u64,
    pub multipart_upload_part_size: u64,
    pub is_server_side_encryption: bool,
    pub is_allow_symbolic_link: bool,
    pub get_object_meta_mode: ObjectMetaMode,
    pub is_audit_after_import: bool,
    pub audit_mode: AuditMode,
    /// The file it was read from, for error messages.
    #[serde(skip)]
    pub source_file: PathBuf,
    /// Key name -> line number, so later validation errors can point at the line.
    #[serde(skip)]
    pub key_lines: BTreeMap<String, usize>,
}

type K = Key<JobConfig>;

/// Every key the original's job files use, in the order of `local_job.cfg`.
const KEYS: &[K] = &[
    K::flag("isIncremental", "false", |c, v| c.is_incremental = v),
    // The 900 s floor is applied after reading, as tests may lower it.
    K::number("incrementalModeInterval", "86400", AT_LEAST_0, |c, v| {
        c.incremental_mode_interval = to_u64(v)
    }),
    K::choice("srcType", "local", SrcType::WORDS, |c, w| {
        c.src_type = w.parse().unwrap_or_default()
    }),
    K::secret("srcAccessKey", |c, v| c.src_access_key = v),
    K::secret("srcSecretKey", |c, v| c.src_secret_key = v),
    K::text("srcDomain", "", |c, v| c.src_domain = v),
    K::text("srcBucket", "", |c, v| c.src_bucket = v),
    K::text("srcPrefix", "", |c, v| c.src_prefix = v),
    K::secret("destAccessKey", |c, v| c.dest_access_key = v),
    K::secret("destSecretKey", |c, v| c.dest_secret_key = v),
    K::text("destDomain", "", |c, v| c.dest_domain = v),
    K::text("destBucket", "", |c, v| c.dest_bucket = v),
    K::checked_text("destPrefix", "", check_dest_prefix, |c, v| {
        c.dest_prefix = v
    }),
    K::number("appId", "0", AT_LEAST_0, |c, v| c.app_id = to_u64(v)),
    K::flag("isDownloadFromCdn", "false", |c, v| {
        c.is_download_from_cdn = v
    }),
    K::text("cdnDomain", "", |c, v| c.cdn_domain = v),
    K::text("httpListFilePath", "", |c, v| c.http_list_file_path = v),
    K::number("httpPrefixColumn", "1", COLUMN, |c, v| {
        c.http_prefix_column = to_u32(v)
    }),
    K::number("relativePathColumn", "2", COLUMN, |c, v| {
        c.relative_path_column = to_u32(v)
    }),
    K::checked_text("jobName", "local_test", check_job_name, |c, v| {
        c.job_name = v
    }),
    K::choice("jobType", "import", JobType::WORDS, |c, w| {
        c.job_type = w.parse().unwrap_or_default()
    }),
    K::number("importSince", "0", AT_LEAST_0, |c, v| c.import_since = v),
    K::number("lastModify", "0", AT_LEAST_0, |c, v| c.last_modify = v),
    K::flag("isSkipExistFile", "false", |c, v| c.is_skip_exist_file = v),
    K::clamped("taskObjectCountLimit", "10000", (1, 50_000), |c, v| {
        c.task_object_count_limit = to_u64(v)
    }),
    K::clamped("taskObjectSizeLimit", "1000000000", AT_LEAST_1, |c, v| {
        c.task_object_size_limit = to_u64(v)
    }),
    K::clamped("scanThreadCount", "1", (1, 32), |c, v| {
        c.scan_thread_count = to_u32(v)
    }),
    K::clamped("maxMultiThreadScanDepth", "1", (1, 16), |c, v| {
        c.max_multi_thread_scan_depth = to_u32(v)
    }),
    K::clamped("uploadThreadNumPerLargeFile", "3", (1, 64), |c, v| {
        c.upload_thread_num_per_large_file = to_u32(v)
    }),
    // Their limits depend on the unit rules of the original; see `adjust`.
    K::size("multipartUploadThreshold", "150m", |c, v| {
        c.multipart_upload_threshold = v
    }),
    K::size("multipartUploadPartSize", "50m", |c, v| {
        c.multipart_upload_part_size = v
    }),
    K::flag("isServerSideEncryption", "false", |c, v| {
        c.is_server_side_encryption = v
    }),
    K::flag("isAllowSymbolicLink", "false", |c, v| {
        c.is_allow_symbolic_link = v
    }),
    K::choice(
        "getObjectMetaMode",
        "stat",
        ObjectMetaMode::WORDS,
        |c, w| c.get_object_meta_mode = w.parse().unwrap_or_default(),
    ),
    K::flag("isAuditAfterImport", "true", |c, v| {
        c.is_audit_after_import = v
    }),
    K::choice("auditMode", "general", AuditMode::WORDS, |c, w| {
        c.audit_mode = w.parse().unwrap_or_default()
    }),
    // The original's Express Tunnel (templates/et.job.cfg): a proxy product we do not speak.
    K::unsupported("isUseExpressTunnel"),
    K::unsupported("expressTunnelProxyHost"),
    K::unsupported("expressTunnelProxyType"),
    K::unsupported("expressTunnelProxyUser"),
    K::unsupported("expressTunnelProxyDest"),
    K::unsupported("expressTunnelAuthToken"),
];

/// Columns of the http list file are 1-based.
const COLUMN: (i64, i64) = (1, u32::MAX as i64);

/// The original's documented floor for `incrementalModeInterval`; tests lower it through
/// this variable so an incremental round does not take 15 minutes.
pub(crate) const MIN_INTERVAL_ENV: &str = "OSSIMPORT_MIN_INCREMENTAL_INTERVAL";
const MIN_INTERVAL: u64 = 900;
const PART_SIZE_FLOOR: u64 = 100 << 10;
const THRESHOLD_FLOOR: u64 = 1 << 20;
/// OSS caps a single PUT and a single part at 5 GiB.
const MAX_PART: u64 = 5 << 30;

fn check_job_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok_chars && (4..=128).contains(&name.len()) {
        return Ok(());
    }
    Err(format!(
        "`{name}` is not a valid job name; use 4 to 128 characters from a-z, A-Z, 0-9, _ and - \
         (default local_test)"
    ))
}

fn check_dest_prefix(prefix: &str) -> Result<(), String> {
    if prefix.starts_with(['/', '\\']) {
        return Err(format!(
            "`{prefix}`: OSS keys cannot start with / or \\; remove the leading character"
        ));
    }
    Ok(())
}

impl Default for JobConfig {
    /// Every key at its default from the key table.
    fn default() -> Self {
        let mut config = JobConfig {
            is_incremental: false,
            incremental_mode_interval: 0,
            src_type: SrcType::default(),
            src_access_key: Secret::default(),
            src_secret_key: Secret::default(),
            src_domain: String::new(),
            src_bucket: String::new(),
            src_prefix: String::new(),
            dest_access_key: Secret::default(),
            dest_secret_key: Secret::default(),
            dest_domain: String::new(),
            dest_bucket: String::new(),
            dest_prefix: String::new(),
            app_id: 0,
            is_download_from_cdn: false,
            cdn_domain: String::new(),
            http_list_file_path: String::new(),
            http_list_stamp: String::new(),
            http_prefix_column: 0,
            relative_path_column: 0,
            job_name: String::new(),
            job_type: JobType::default(),
            import_since: 0,
            last_modify: 0,
            is_skip_exist_file: false,
            task_object_count_limit: 0,
            task_object_size_limit: 0,
            scan_thread_count: 0,
            max_multi_thread_scan_depth: 0,
            upload_thread_num_per_large_file: 0,
            multipart_upload_threshold: 0,
            multipart_upload_part_size: 0,
            is_server_side_encryption: false,
            is_allow_symbolic_link: false,
            get_object_meta_mode: ObjectMetaMode::default(),
            is_audit_after_import: false,
            audit_mode: AuditMode::default(),
            source_file: PathBuf::new(),
            key_lines: BTreeMap::new(),
        };
        keys::apply_defaults(KEYS, &mut config);
        config
    }
}

impl JobConfig {
    /// Reads and parses the job file at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] when the file cannot be read or a value cannot mean anything.
    pub fn load(path: &Path) -> Result<Loaded<JobConfig>, ConfigError> {
        Self::parse_str(&props::read_text(path)?, path)
    }

    /// Parses the text of a job file; `path` is only used in messages.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the line and key of the first value that cannot mean anything.
    pub fn parse_str(text: &str, path: &Path) -> Result<Loaded<JobConfig>, ConfigError> {
        Self::parse_with_env(text, path, &|name| std::env::var(name).ok())
    }

    pub(crate) fn parse_with_env(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded<JobConfig>, ConfigError> {
        let entries = props::parse_entries(text, path)?;
        let mut config = JobConfig {
            source_file: path.to_path_buf(),
            ..JobConfig::default()
        };
        let applied = keys::apply(KEYS, &mut config, entries, path)?;
        config.key_lines = applied.key_lines;
        let mut warnings = applied.warnings;
        let min_interval = env(MIN_INTERVAL_ENV)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(MIN_INTERVAL);
        config.adjust(min_interval, &mut warnings);
        warnings.sort_by_key(|w| w.line.unwrap_or(usize::MAX));
        Ok(Loaded { config, warnings })
    }

    /// The original's rules that involve units or another setting, applied once all keys
    /// are read; each change is warned about, at the key's line.
    fn adjust(&mut self, min_interval: u64, warnings: &mut Vec<ConfigWarning>) {
        let mut warn = |config: &Self, key: &str, message: String| {
            warnings.push(config.warning_at(key, message));
        };
        if self.incremental_mode_interval < min_interval {
            let msg = format!(
                "{} s is below the minimum of {min_interval} s; using {min_interval}",
                self.incremental_mode_interval
            );
            warn(self, "incrementalModeInterval", msg);
            self.incremental_mode_interval = min_interval;
        }
        let part = self.multipart_upload_part_size;
        if part <= PART_SIZE_FLOOR {
            let msg = format!("{} is not above 100k; using 50m", format_size(part));
            warn(self, "multipartUploadPartSize", msg);
            self.multipart_upload_part_size = 50 << 20;
        } else if part > MAX_PART {
            let msg = format!(
                "{} is above the OSS limit of 5g per part; using 5g",
                format_size(part)
            );
            warn(self, "multipartUploadPartSize", msg);
            self.multipart_upload_part_size = MAX_PART;
        }
        let threshold = self.multipart_upload_threshold;
        if threshold <= THRESHOLD_FLOOR {
            let msg = format!("{} is not above 1m; using 150m", format_size(threshold));
            warn(self, "multipartUploadThreshold", msg);
            self.multipart_upload_threshold = 150 << 20;
        } else if threshold > MAX_PART {
            let msg = format!(
                "{}: OSS takes at most 5g in one upload, so larger files must use multipart; \
                 using 5g",
                format_size(threshold)
            );
            warn(self, "multipartUploadThreshold", msg);
            self.multipart_upload_threshold = MAX_PART;
        }
    }

    fn warning_at(&self, key: &str, message: String) -> ConfigWarning {
        ConfigWarning {
            path: self.source_file.clone(),
            line: self.key_lines.get(key).copied(),
            key: key.to_string(),
            message,
        }
    }

    /// An error located at `key` (its line, when the file has it), for validations done
    /// later by other modules.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.source_file, message)
            .at_line(self.key_lines.get(key).copied())
            .for_key(key)
    }
}

#[cfg(test)]
mod tests;
