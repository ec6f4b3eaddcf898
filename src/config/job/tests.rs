//! Unit tests of the job file's rules: defaults, blanks, clamps, and one test per kind of
//! malformed value, each checking the line, the key and that the message says what is allowed.

use super::*;
use crate::config::parse_size;

const PATH: &str = "conf/local_job.cfg";

fn parse(text: &str) -> Result<Loaded<JobConfig>, ConfigError> {
    JobConfig::parse_with_env(text, Path::new(PATH), &|_| None)
}

fn warnings_for(loaded: &Loaded<JobConfig>, key: &str) -> Vec<String> {
    let found = loaded.warnings.iter().filter(|w| w.key == key);
    found.map(|w| w.message.clone()).collect()
}

/// Asserts the error is located at `line` and `key` and says what is allowed.
fn assert_refused(text: &str, line: usize, key: &str, says: &str) {
    let err = parse(text).unwrap_err();
    assert_eq!(err.path, Path::new(PATH), "{text}");
    assert_eq!(err.line, Some(line), "{text}");
    assert_eq!(err.key.as_deref(), Some(key), "{text}");
    assert!(err.message.contains(says), "{text}: {err}");
    let prefix = format!("{PATH}:{line}: key `{key}`: ");
    assert!(err.to_string().starts_with(&prefix), "{err}");
}

#[test]
fn empty_file_is_all_defaults() {
    let loaded = parse("").unwrap();
    assert!(loaded.warnings.is_empty());
    let c = loaded.config;
    assert!(!c.is_incremental);
    assert_eq!(c.incremental_mode_interval, 86_400);
    assert_eq!(c.src_type, SrcType::Local);
    assert_eq!(c.job_name, "local_test");
    assert_eq!(c.job_type, JobType::Import);
    assert_eq!((c.import_since, c.last_modify, c.app_id), (0, 0, 0));
    assert_eq!((c.http_prefix_column, c.relative_path_column), (1, 2));
    assert_eq!(c.task_object_count_limit, 10_000);
    assert_eq!(c.task_object_size_limit, 1_000_000_000);
    assert_eq!((c.scan_thread_count, c.max_multi_thread_scan_depth), (1, 1));
    assert_eq!(c.upload_thread_num_per_large_file, 3);
    assert_eq!(c.multipart_upload_threshold, 150 << 20);
    assert_eq!(c.multipart_upload_part_size, 50 << 20);
    assert_eq!(c.get_object_meta_mode, ObjectMetaMode::Stat);
    assert!(c.is_audit_after_import);
    assert_eq!(c.audit_mode, AuditMode::General);
    assert!(c.dest_prefix.is_empty() && c.dest_access_key.is_empty());
    assert_eq!(c.source_file, Path::new(PATH));
    assert_eq!(
        JobConfig {
            source_file: PathBuf::new(),
            ..c
        },
        JobConfig::default()
    );
}

#[test]
fn every_default_written_out_reads_back_as_default() {
    for key in KEYS {
        let loaded = parse(&format!("{}={}\n", key.name, key.default)).unwrap();
        let unsupported = matches!(key.kind, keys::Kind::Unsupported);
        assert_eq!(loaded.warnings.is_empty(), !unsupported, "{}", key.name);
        let mut config = loaded.config;
        config.source_file = PathBuf::new();
        config.key_lines.clear();
        assert_eq!(config, JobConfig::default(), "{}", key.name);
    }
}

#[test]
fn blank_numbers_booleans_and_words_take_their_default() {
    let text = "scanThreadCount=\nisAuditAfterImport= \nauditMode=\nmultipartUploadPartSize=\n\
                srcBucket=\njobName=local_test\n";
    let loaded = parse(text).unwrap();
    let c = &loaded.config;
    assert_eq!(c.scan_thread_count, 1);
    assert!(c.is_audit_after_import);
    assert_eq!(c.audit_mode, AuditMode::General);
    assert_eq!(c.multipart_upload_part_size, 50 << 20);
    assert_eq!(c.src_bucket, "");
    assert_eq!(c.key_lines.get("srcBucket"), Some(&5));
    assert!(loaded.warnings.is_empty());
}

#[test]
fn values_are_trimmed_and_words_case_insensitive() {
    let loaded = parse("isSkipExistFile=TRUE  \nsrcType= Local\nsrcPrefix= /d/ \n").unwrap();
    assert!(loaded.config.is_skip_exist_file);
    assert_eq!(loaded.config.src_type, SrcType::Local);
    assert_eq!(loaded.config.src_prefix, "/d/");
}

#[test]
fn unknown_and_duplicate_keys_warn() {
    let loaded =
        parse("fooBar=1\nscanThreadCount=2\nscanThreadCount=3\nisskipexistfile=true\n").unwrap();
    assert_eq!(loaded.config.scan_thread_count, 3);
    assert!(!loaded.config.is_skip_exist_file);
    let w: Vec<_> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w[0],
        format!("{PATH}:1: key `fooBar`: unknown key, ignored")
    );
    assert!(w[1].starts_with(&format!("{PATH}:3: key `scanThreadCount`: set again")));
    assert!(w[2].contains("did you mean `isSkipExistFile`?"), "{}", w[2]);
    assert_eq!(loaded.config.key_lines.get("scanThreadCount"), Some(&3));
}

#[test]
fn out_of_range_numbers_are_clamped_with_a_warning() {
    let text = "scanThreadCount=0\nmaxMultiThreadScanDepth=99\ntaskObjectCountLimit=60000\n\
                uploadThreadNumPerLargeFile=100\ntaskObjectSizeLimit=0\n";
    let loaded = parse(text).unwrap();
    let c = &loaded.config;
    assert_eq!(
        (c.scan_thread_count, c.max_multi_thread_scan_depth),
        (1, 16)
    );
    assert_eq!(c.task_object_count_limit, 50_000);
    assert_eq!(c.upload_thread_num_per_large_file, 64);
    assert_eq!(c.task_object_size_limit, 1);
    assert_eq!(loaded.warnings.len(), 5);
    assert_eq!(loaded.warnings[2].line, Some(3));
    assert!(
        loaded.warnings[2]
            .message
            .contains("1 to 50000; using 50000")
    );
}

#[test]
fn size_rules_of_the_original() {
    let loaded = parse("multipartUploadPartSize=100k\nmultipartUploadThreshold=1m\n").unwrap();
    assert_eq!(loaded.config.multipart_upload_part_size, 50 << 20);
    assert_eq!(loaded.config.multipart_upload_threshold, 150 << 20);
    assert!(warnings_for(&loaded, "multipartUploadPartSize")[0].contains("100k"));
    assert_eq!(loaded.warnings[1].line, Some(2));

    let loaded = parse("multipartUploadPartSize=101k\nmultipartUploadThreshold=2m\n").unwrap();
    assert_eq!(loaded.config.multipart_upload_part_size, 101 << 10);
    assert_eq!(loaded.config.multipart_upload_threshold, 2 << 20);
    assert!(loaded.warnings.is_empty());

    let loaded = parse("multipartUploadPartSize=6g\nmultipartUploadThreshold=10g\n").unwrap();
    assert_eq!(
        loaded.config.multipart_upload_part_size,
        parse_size("5g").unwrap()
    );
    assert_eq!(loaded.config.multipart_upload_threshold, 5 << 30);
    assert_eq!(loaded.warnings.len(), 2);
}

#[test]
fn incremental_interval_floor_comes_from_the_environment() {
    let text = "incrementalModeInterval=60\n";
    let loaded = parse(text).unwrap();
    assert_eq!(loaded.config.incremental_mode_interval, 900);
    assert!(warnings_for(&loaded, "incrementalModeInterval")[0].contains("minimum of 900"));

    let env = |name: &str| (name == MIN_INTERVAL_ENV).then(|| "5".to_string());
    let loaded = JobConfig::parse_with_env(text, Path::new(PATH), &env).unwrap();
    assert_eq!(loaded.config.incremental_mode_interval, 60);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn bad_boolean() {
    assert_refused(
        "# c\nisSkipExistFile=yes\n",
        2,
        "isSkipExistFile",
        "expected true or false",
    );
}

#[test]
fn bad_number() {
    let says = "`abc` is not a whole number; expected 1 to 50000 (default 10000)";
    assert_refused(
        "\n\ntaskObjectCountLimit=abc\n",
        3,
        "taskObjectCountLimit",
        says,
    );
    assert_refused("appId=1.5\n", 1, "appId", "expected 0 or more");
    assert_refused(
        "scanThreadCount=99999999999999999999\n",
        1,
        "scanThreadCount",
        "too large",
    );
}

#[test]
fn bad_size_unit() {
    let says = "unknown unit `q`; expected a whole number of bytes with an optional unit";
    assert_refused(
        "a=1\nmultipartUploadPartSize=12q\n",
        2,
        "multipartUploadPartSize",
        says,
    );
}

#[test]
fn bad_enum() {
    let says = concat!(
        "`ftp` is not allowed; expected one of ",
        "local, oss, qiniu, bos, ks3, s3, youpai, http, cos, azure (default local)"
    );
    assert_refused("srcType=ftp\n", 1, "srcType", says);
    assert_refused(
        "\nauditMode=full\n",
        2,
        "auditMode",
        "simple, general, detailed",
    );
    assert_refused("jobType=copy\n", 1, "jobType", "import, audit");
    assert_refused(
        "getObjectMetaMode=get\n",
        1,
        "getObjectMetaMode",
        "head, stat",
    );
}

#[test]
fn bad_job_name() {
    let says = "use 4 to 128 characters from a-z, A-Z, 0-9, _ and -";
    assert_refused("jobName=abc\n", 1, "jobName", says);
    assert_refused("x=1\njobName=my job\n", 2, "jobName", says);
    assert_refused("jobName=\n", 1, "jobName", says);
    assert_refused(
        &format!("jobName={}\n", "a".repeat(129)),
        1,
        "jobName",
        says,
    );
    let ok = parse(&format!("jobName=Job_-{}\n", "9".repeat(123))).unwrap();
    assert_eq!(ok.config.job_name.len(), 128);
}

#[test]
fn dest_prefix_with_leading_slash() {
    let says = "OSS keys cannot start with / or \\; remove the leading character";
    assert_refused("destPrefix=/docs/\n", 1, "destPrefix", says);
    assert_refused("\ndestPrefix=\\\\docs\n", 2, "destPrefix", says);
}

#[test]
fn negative_times() {
    assert_refused(
        "importSince=-1\n",
        1,
        "importSince",
        "out of range; expected 0 or more",
    );
    assert_refused("\nlastModify=-5\n", 2, "lastModify", "expected 0 or more");
}

#[test]
fn no_input_panics() {
    let texts = [
        "=\n",
        ":\n",
        "\\\n",
        "=x\n",
        "srcType\n",
        "jobName=\u{0}\u{ffff}\n",
        "\\u",
        "scanThreadCount=-9223372036854775808\n",
        "taskObjectCountLimit=+5\n",
    ];
    for text in texts {
        let _ = parse(text);
    }
    assert_eq!(
        parse("taskObjectCountLimit=+5\n")
            .unwrap()
            .config
            .task_object_count_limit,
        5
    );
}

#[test]
fn the_first_error_is_the_first_in_the_file() {
    // srcType comes before scanThreadCount in the key table, not in this file.
    assert_refused(
        "scanThreadCount=x\nsrcType=ftp\n",
        1,
        "scanThreadCount",
        "whole number",
    );
}

#[test]
fn warnings_read_top_to_bottom() {
    let text = "multipartUploadPartSize=1k\nscanThreadCount=99\nbogus=1\n";
    let loaded = parse(text).unwrap();
    let lines: Vec<_> = loaded.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [Some(1), Some(2), Some(3)]);
}
