//! Tests over the original's own conf files (tests/fixtures/conf): each must read unmodified,
//! with the meaning the original gives it, and no secret may leak from them.

use std::path::{Path, PathBuf};

use super::*;

fn conf(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/conf")
        .join(name)
}

fn job(name: &str) -> Loaded<JobConfig> {
    JobConfig::load(&conf(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn warned_keys(loaded: &Loaded<JobConfig>) -> Vec<&str> {
    loaded.warnings.iter().map(|w| w.key.as_str()).collect()
}

const ALL_JOB_FILES: &[&str] = &[
    "local_job.cfg",
    "templates/blob.job.cfg",
    "templates/bos.job.cfg",
    "templates/cos.job.cfg",
    "templates/et.job.cfg",
    "templates/local.job.cfg",
    "templates/oss.job.cfg",
    "templates/qiniu.job.cfg",
    "templates/s3.job.cfg",
    "templates/youpai.job.cfg",
];

#[test]
fn every_shipped_file_is_covered() {
    let mut found: Vec<String> = std::fs::read_dir(conf("templates"))
        .unwrap()
        .map(|e| format!("templates/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    found.push("local_job.cfg".into());
    found.sort();
    assert_eq!(found, ALL_JOB_FILES);
}

#[test]
fn local_job_cfg() {
    let loaded = job("local_job.cfg");
    assert_eq!(loaded.warnings, vec![]);
    let c = &loaded.config;
    assert_eq!(c.src_type, SrcType::Local);
    assert_eq!(c.src_prefix, "d:/work/oss/data/");
    assert_eq!(
        c.dest_domain,
        "http://oss-cn-hangzhou-internal.aliyuncs.com"
    );
    assert_eq!(c.dest_bucket, "");
    assert!(c.dest_access_key.is_empty() && c.src_access_key.is_empty());
    assert!(c.is_skip_exist_file);
    assert_eq!(c.task_object_count_limit, 1000);
    assert_eq!(c.task_object_size_limit, 1_000_000_000);
    assert_eq!(c.http_list_file_path, "c:/example/http.list");
    assert_eq!(c.multipart_upload_threshold, 150 << 20);
    assert_eq!(c.multipart_upload_part_size, 50 << 20);
    assert!(c.is_audit_after_import);
    assert_eq!(c.audit_mode, AuditMode::General);
    assert_eq!(c.job_name, "local_test");
    assert_eq!(c.source_file, conf("local_job.cfg"));
    // Keys this file does not have take their defaults.
    assert!(!c.is_download_from_cdn && c.cdn_domain.is_empty());
    // Lines point into the real file, for errors raised later.
    let line = c.key_lines["srcPrefix"];
    let text = std::fs::read_to_string(conf("local_job.cfg")).unwrap();
    assert_eq!(
        text.lines().nth(line - 1),
        Some("srcPrefix=d:/work/oss/data/")
    );
    // Blank credentials and bucket: readable, but not runnable until filled in.
    assert_eq!(c.validate().unwrap_err().key.as_deref(), Some("destBucket"));
}

#[test]
fn local_template_with_trailing_space_boolean() {
    let loaded = job("templates/local.job.cfg");
    assert_eq!(loaded.warnings, vec![]);
    let c = &loaded.config;
    assert!(c.is_audit_after_import); // written `isAuditAfterImport=true `
    assert_eq!(c.src_prefix, "D:/work/oss/data/");
    assert_eq!(c.dest_prefix, "docs/");
    assert_eq!(c.dest_bucket, "mybucket");
    assert_eq!(c.dest_domain, "http://oss-cn-hangzhou-zmf.aliyuncs.com");
    assert!(!c.dest_access_key.is_empty() && !c.dest_secret_key.is_empty());
    c.validate().unwrap();
}

#[test]
fn s3_template_clamps_scan_threads() {
    let loaded = job("templates/s3.job.cfg");
    assert_eq!(loaded.config.src_type, SrcType::S3);
    assert_eq!(loaded.config.scan_thread_count, 32);
    assert_eq!(warned_keys(&loaded), ["scanThreadCount"]);
    assert!(loaded.warnings[0].message.contains("using 32"));
    assert_eq!(
        loaded.config.src_domain,
        "http://s3.us-east-1.amazonaws.com"
    );
}

#[test]
fn templates_of_the_built_sources_are_runnable_and_the_rest_refused() {
    for name in [
        "s3", "oss", "cos", "bos", "local", "youpai", "qiniu", "blob",
    ] {
        let c = job(&format!("templates/{name}.job.cfg")).config;
        c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn express_tunnel_template() {
    let loaded = job("templates/et.job.cfg");
    let c = &loaded.config;
    assert_eq!(c.job_name, "local_test_md");
    assert_eq!(c.audit_mode, AuditMode::Simple);
    assert_eq!(c.app_id, 0);
    assert_eq!(c.task_object_count_limit, 5);
    assert_eq!(c.src_prefix, "/home/user/oss/data/");
    assert_eq!(
        warned_keys(&loaded),
        [
            "isUseExpressTunnel",
            "expressTunnelProxyHost",
            "expressTunnelProxyType",
            "expressTunnelProxyUser",
            "expressTunnelProxyDest",
            "expressTunnelAuthToken",
        ]
    );
    for w in &loaded.warnings {
        assert_eq!(w.message, "not supported by ossimport-rs; ignored");
        assert!(!w.to_string().contains("ZDM5"), "{w}");
    }
}

#[test]
fn blob_template() {
    let c = job("templates/blob.job.cfg").config;
    assert_eq!(c.src_type, SrcType::Azure);
    assert_eq!(c.multipart_upload_threshold, 50 << 20);
    assert_eq!(c.multipart_upload_part_size, 150 << 20);
    assert_eq!(c.src_domain, "core.chinacloudapi.cn");
    assert_eq!(c.src_bucket, "mycontainer");
    assert!(c.src_secret_key.expose().ends_with("STHgjJA=="));
}

#[test]
fn cos_template() {
    let c = job("templates/cos.job.cfg").config;
    assert_eq!(c.src_type, SrcType::Cos);
    assert_eq!(c.app_id, 1_252_883_280);
    assert_eq!(c.src_prefix, "/docs/");
    assert_eq!(c.src_domain, "sh");
}

#[test]
fn youpai_template() {
    let c = job("templates/youpai.job.cfg").config;
    assert_eq!(c.src_type, SrcType::Youpai);
    assert_eq!(c.task_object_count_limit, 1);
    assert_eq!(c.src_access_key.expose(), "operator");
    assert!(!c.is_download_from_cdn);
}

#[test]
fn other_templates() {
    for (name, src_type, domain) in [
        (
            "templates/bos.job.cfg",
            SrcType::Bos,
            "http://bj.bcebos.com",
        ),
        (
            "templates/oss.job.cfg",
            SrcType::Oss,
            "http://oss-cn-hangzhou-internal.aliyuncs.com",
        ),
        (
            "templates/qiniu.job.cfg",
            SrcType::Qiniu,
            "http://mybucket.u.qiniudn.com",
        ),
    ] {
        let loaded = job(name);
        assert_eq!(loaded.warnings, vec![], "{name}");
        assert_eq!(loaded.config.src_type, src_type, "{name}");
        assert_eq!(loaded.config.src_domain, domain, "{name}");
        assert_eq!(loaded.config.get_object_meta_mode, ObjectMetaMode::Stat);
    }
    assert_eq!(job("templates/oss.job.cfg").config.dest_prefix, "dest/");
}

/// Every secret value in the shipped files, read back from the files themselves.
fn shipped_secrets() -> Vec<String> {
    let secret_keys = [
        "srcAccessKey",
        "srcSecretKey",
        "destAccessKey",
        "destSecretKey",
        "expressTunnelAuthToken",
    ];
    let mut secrets = Vec::new();
    for name in ALL_JOB_FILES {
        let text = std::fs::read_to_string(conf(name)).unwrap();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=')
                && secret_keys.contains(&key)
                && !value.trim().is_empty()
            {
                secrets.push(value.trim().to_string());
            }
        }
    }
    secrets
}

#[test]
fn secrets_never_leak_into_debug_warnings_or_serde() {
    let secrets = shipped_secrets();
    assert!(secrets.len() > 20, "{}", secrets.len());
    for name in ALL_JOB_FILES {
        let loaded = job(name);
        let mut shown = format!("{:?}\n{:?}", loaded.config, loaded.warnings);
        for w in &loaded.warnings {
            shown.push_str(&w.to_string());
        }
        shown.push_str(&toml::to_string(&loaded.config).unwrap());
        for secret in &secrets {
            assert!(!shown.contains(secret.as_str()), "{name} shows {secret}");
        }
    }
}

#[test]
fn serde_round_trip_keeps_everything_but_secrets() {
    let c = job("templates/cos.job.cfg").config;
    let back: JobConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back.app_id, 1_252_883_280);
    assert!(back.dest_access_key.is_empty());
    let without_secrets = JobConfig {
        src_access_key: Secret::default(),
        src_secret_key: Secret::default(),
        dest_access_key: Secret::default(),
        dest_secret_key: Secret::default(),
        source_file: PathBuf::new(),
        key_lines: Default::default(),
        ..c
    };
    assert_eq!(back, without_secrets);
}
