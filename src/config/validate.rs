//! What a job needs before this version can run it: credentials from the environment, and
//! the checks made at submit time. Reading accepts every job file the original accepts;
//! this is where "readable" becomes "runnable by ossimport-rs".

use super::{ConfigError, JobConfig, Secret, SrcType};
use crate::source::endpoint::s3_endpoint;
use crate::source::s3_vendor;

pub(crate) const ENV_ACCESS_KEY: &str = "OSS_ACCESS_KEY_ID";
pub(crate) const ENV_SECRET_KEY: &str = "OSS_ACCESS_KEY_SECRET";

impl JobConfig {
    /// Fill blank dest credentials from `OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET`
    /// (only when blank: the file wins, as it is the more specific of the two).
    pub fn apply_env_credentials(&mut self) {
        self.apply_credentials_from(&|name| std::env::var(name).ok());
    }

    pub(crate) fn apply_credentials_from(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let fill = |slot: &mut Secret, name: &str| {
            if slot.is_empty()
                && let Some(value) = env(name).filter(|v| !v.trim().is_empty())
            {
                *slot = Secret::new(value.trim());
            }
        };
        fill(&mut self.dest_access_key, ENV_ACCESS_KEY);
        fill(&mut self.dest_secret_key, ENV_SECRET_KEY);
    }

    /// Checks needed before a job can be submitted or run by this version. Errors point at
    /// the key's line. File-system checks (does `srcPrefix` exist) are the caller's.
    ///
    /// # Errors
    /// The first setting this version cannot run with, saying what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_source()?;
        let domain = self.dest_domain.to_ascii_lowercase();
        if domain.is_empty() {
            return Err(self.error_at(
                "destDomain",
                "is blank; set it to the OSS endpoint without the bucket, for example \
                 http://oss-cn-hangzhou.aliyuncs.com",
            ));
        }
        if !(domain.starts_with("http://") || domain.starts_with("https://")) {
            return Err(self.error_at(
                "destDomain",
                format!(
                    "`{}` must start with http:// or https://, for example \
                     http://oss-cn-hangzhou.aliyuncs.com",
                    crate::source::endpoint::hide_userinfo(&self.dest_domain)
                ),
            ));
        }
        if self.dest_bucket.is_empty() {
            return Err(self.error_at("destBucket", "is blank; set it to the OSS bucket name"));
        }
        for (key, secret, env) in [
            ("destAccessKey", &self.dest_access_key, ENV_ACCESS_KEY),
            ("destSecretKey", &self.dest_secret_key, ENV_SECRET_KEY),
        ] {
            if secret.is_empty() {
                return Err(self.error_at(
                    key,
                    format!(
                        "is blank; fill destAccessKey/destSecretKey in the file or set \
                         {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} in the environment ({env} is \
                         the one for this key)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_source(&self) -> Result<(), ConfigError> {
        let vendor = match self.src_type {
            SrcType::Local => {
                if self.src_prefix.is_empty() {
                    return Err(self.error_at(
                        "srcPrefix",
                        "is blank; set it to the absolute directory to import, with / \
                         separators and a trailing / (for example c:/example/ or \
                         /home/user/data/)",
                    ));
                }
                return Ok(());
            }
            SrcType::Http => {
                if self.http_list_file_path.trim().is_empty() {
                    return Err(self.error_at(
                        "httpListFilePath",
                        "is blank; set it to the file listing the URLs to migrate, one \
                         `<url prefix> <relative path>` per line",
                    ));
                }
                if self.http_prefix_column == self.relative_path_column {
                    return Err(self.error_at(
                        "relativePathColumn",
                        "is the same column as httpPrefixColumn; they must differ (defaults \
                         1 and 2)",
                    ));
                }
                return Ok(());
            }
            SrcType::Youpai => return self.validate_youpai(),
            SrcType::Azure => return self.validate_azure(),
            SrcType::Qiniu => None,
            other => Some(s3_vendor(other).ok_or_else(|| {
                self.error_at(
                    "srcType",
                    format!(
                        "srcType={other} is not supported yet by ossimport-rs; this version \
                         migrates local, oss, s3, cos, bos, ks3, qiniu, youpai, azure and http"
                    ),
                )
            })?),
        };
        match vendor {
            Some(vendor) => {
                if let Err(e) = s3_endpoint(vendor, &self.src_domain, &self.src_bucket, self.app_id)
                {
                    return Err(self.error_at(e.key, e.message));
                }
            }
            None => self.validate_qiniu()?,
        }
        for (key, secret) in [
            ("srcAccessKey", &self.src_access_key),
            ("srcSecretKey", &self.src_secret_key),
        ] {
            if secret.is_empty() {
                return Err(self.error_at(
                    key,
                    format!(
                        "is blank; srcType={} reads the source bucket with \
                         srcAccessKey/srcSecretKey: fill both",
                        self.src_type
                    ),
                ));
            }
        }
        Ok(())
    }

    /// qiniu: srcDomain is the bucket's download domain, a URL; the bucket is named apart.
    fn validate_qiniu(&self) -> Result<(), ConfigError> {
        let domain = self.src_domain.trim();
        if !(domain.starts_with("http://") || domain.starts_with("https://")) {
            return Err(self.error_at(
                "srcDomain",
                "must be the bucket's download domain as a URL with http:// or https:// \
                 (for example http://mybucket.u.qiniudn.com or your bound domain)",
            ));
        }
        if self.src_bucket.trim().is_empty() {
            return Err(self.error_at(
                "srcBucket",
                "is blank; set it to the name of the Qiniu bucket to migrate",
            ));
        }
        Ok(())
    }
}

impl JobConfig {
    /// UPYUN: the REST API endpoint, the service, the operator and its password, and the CDN
    /// to download from when `isDownloadFromCdn` is on.
    fn validate_youpai(&self) -> Result<(), ConfigError> {
        let domain = self.src_domain.to_ascii_lowercase();
        if !(domain.starts_with("http://") || domain.starts_with("https://")) {
            return Err(self.error_at(
                "srcDomain",
                "must be UPYUN's REST API with http:// or https://, for example \
                 http://v0.api.upyun.com",
            ));
        }
        let blanks = [
            (
                "srcBucket",
                self.src_bucket.is_empty(),
                "the UPYUN service name",
            ),
            (
                "srcAccessKey",
                self.src_access_key.is_empty(),
                "the UPYUN operator",
            ),
            (
                "srcSecretKey",
                self.src_secret_key.is_empty(),
                "the operator's password",
            ),
            (
                "cdnDomain",
                self.is_download_from_cdn && self.cdn_domain.trim().is_empty(),
                "the CDN domain files are downloaded from when isDownloadFromCdn=true",
            ),
        ];
        match blanks.into_iter().find(|(_, blank, _)| *blank) {
            Some((key, _, what)) => {
                Err(self.error_at(key, format!("is blank; srcType=youpai needs {what}")))
            }
            None => Ok(()),
        }
    }
}

impl JobConfig {
    /// `srcType=azure`: an account, a container and a usable srcDomain. The key is checked at
    /// start (the shipped template masks it, so it is not base64 there).
    fn validate_azure(&self) -> Result<(), ConfigError> {
        let account = self.src_access_key.expose();
        if let Err(e) = crate::source::azure::blob_endpoint(&self.src_domain, account) {
            return Err(self.error_at("srcDomain", e));
        }
        if self.src_bucket.trim().is_empty() {
            return Err(self.error_at(
                "srcBucket",
                "is blank; set it to the name of the Azure container to migrate",
            ));
        }
        if account.trim().is_empty() {
            return Err(self.error_at(
                "srcAccessKey",
                "is blank; srcType=azure reads with srcAccessKey = the storage account's \
                 name and srcSecretKey = its access key",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A job this version runs: the shipped local template with credentials.
    const RUNNABLE: &str = "srcType=local\nsrcPrefix=/data/\ndestDomain=http://127.0.0.1:9000\n\
        destBucket=b\ndestAccessKey=ak\ndestSecretKey=sk\nisAuditAfterImport=true\n";

    fn job(extra: &str) -> JobConfig {
        let text = format!("{RUNNABLE}{extra}");
        JobConfig::parse_str(&text, Path::new("conf/local_job.cfg"))
            .unwrap()
            .config
    }

    fn refused(extra: &str) -> ConfigError {
        job(extra).validate().unwrap_err()
    }

    #[test]
    fn a_local_job_with_credentials_is_runnable() {
        job("").validate().unwrap();
        job("destDomain=HTTPS://oss.example.com\n")
            .validate()
            .unwrap();
        job("auditMode=detailed\nisAuditAfterImport=false\n")
            .validate()
            .unwrap();
    }

    #[test]
    fn youpai_needs_its_endpoint_keys_service_and_a_cdn_when_it_downloads_from_one() {
        let ok = "srcType=youpai\nsrcDomain=http://v0.api.upyun.com\nsrcBucket=svc\n\
            srcAccessKey=op\nsrcSecretKey=pw\n";
        job(ok).validate().unwrap();
        job(&format!(
            "{ok}isDownloadFromCdn=true\ncdnDomain=cdn.example.com\n"
        ))
        .validate()
        .unwrap();
        for (change, key, says) in [
            ("srcDomain=v0.api.upyun.com\n", "srcDomain", "http://"),
            ("srcBucket=\n", "srcBucket", "service name"),
            ("srcSecretKey=\n", "srcSecretKey", "password"),
            ("isDownloadFromCdn=true\n", "cdnDomain", "isDownloadFromCdn"),
        ] {
            // A later line wins in a properties file.
            let err = refused(&format!("{ok}{change}"));
            assert_eq!(err.key.as_deref(), Some(key), "{change}");
            assert!(err.message.contains(says), "{change}: {err}");
        }
    }

    #[test]
    fn refusals_point_at_the_key_line() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "srcType=youpai\nsrcDomain=v0.api.upyun.com\n",
                "srcDomain",
                9,
                "http:// or https://",
            ),
            ("srcPrefix=\n", "srcPrefix", 8, "absolute directory"),
            ("destDomain=\n", "destDomain", 8, "is blank"),
            (
                "destDomain=oss.example.com\n",
                "destDomain",
                8,
                "http:// or https://",
            ),
            ("destBucket=\n", "destBucket", 8, "bucket name"),
            ("destAccessKey=\n", "destAccessKey", 8, "OSS_ACCESS_KEY_ID"),
            (
                "destSecretKey=\n",
                "destSecretKey",
                8,
                "OSS_ACCESS_KEY_SECRET",
            ),
        ];
        for (extra, key, line, says) in cases {
            let err = refused(extra);
            assert_eq!(err.key.as_deref(), Some(*key), "{extra}");
            assert_eq!(err.line, Some(*line), "{extra}");
            assert!(err.message.contains(says), "{extra}: {err}");
            let at = format!("conf/local_job.cfg:{line}: key `");
            assert!(err.to_string().starts_with(&at), "{err}");
        }
    }

    #[test]
    fn remote_sources_need_their_endpoint_bucket_and_keys() {
        let s3 = "srcType=s3\nsrcDomain=http://s3.us-west-2.amazonaws.com\nsrcBucket=b\n";
        job(&format!("{s3}srcAccessKey=a\nsrcSecretKey=s\n"))
            .validate()
            .unwrap();
        let err = refused(&format!("{s3}srcAccessKey=a\n"));
        assert_eq!(err.key.as_deref(), Some("srcSecretKey"));
        assert!(err.message.contains("fill both"), "{err}");
        let err = refused("srcType=oss\nsrcDomain=\nsrcBucket=b\nsrcAccessKey=a\nsrcSecretKey=s\n");
        assert_eq!(err.key.as_deref(), Some("srcDomain"), "{err}");
        let err =
            refused("srcType=cos\nsrcDomain=sh\nsrcBucket=b\nsrcAccessKey=a\nsrcSecretKey=s\n");
        assert!(err.message.contains("set appId"), "{err}");
        let err = refused("srcType=http\nhttpListFilePath=\n");
        assert_eq!(err.key.as_deref(), Some("httpListFilePath"), "{err}");
        job("srcType=http\nhttpListFilePath=/l.txt\n")
            .validate()
            .unwrap();
    }

    #[test]
    fn a_key_missing_from_the_file_has_no_line() {
        let config = JobConfig::parse_str("srcPrefix=/d/\n", Path::new("j.cfg"))
            .unwrap()
            .config;
        let err = config.validate().unwrap_err();
        assert_eq!(err.key.as_deref(), Some("destDomain"));
        assert_eq!(err.line, None);
        assert!(
            err.to_string()
                .starts_with("j.cfg: key `destDomain`: is blank")
        );
    }

    #[test]
    fn credentials_come_from_the_environment_only_when_blank() {
        let env = |name: &str| match name {
            ENV_ACCESS_KEY => Some("env-ak".to_string()),
            ENV_SECRET_KEY => Some("env-sk".to_string()),
            _ => None,
        };
        let mut config = job("destAccessKey=\ndestSecretKey=\n");
        config.apply_credentials_from(&env);
        assert_eq!(config.dest_access_key.expose(), "env-ak");
        assert_eq!(config.dest_secret_key.expose(), "env-sk");
        config.validate().unwrap();

        let mut config = job("");
        config.apply_credentials_from(&env);
        assert_eq!(config.dest_access_key.expose(), "ak");
        assert_eq!(config.dest_secret_key.expose(), "sk");

        let mut config = job("destSecretKey=\n");
        config.apply_credentials_from(&|_| Some("  ".to_string()));
        assert!(config.dest_secret_key.is_empty());
        let err = config.validate().unwrap_err();
        assert!(
            err.message
                .contains("fill destAccessKey/destSecretKey in the file")
        );
    }

    #[test]
    fn error_at_is_for_other_modules() {
        let config = job("");
        let err = config.error_at("srcPrefix", "directory not found; check the path");
        assert_eq!(
            err.to_string(),
            "conf/local_job.cfg:2: key `srcPrefix`: directory not found; check the path"
        );
    }
}
