//! What a job needs before this version can run it: credentials from the environment, and
//! the checks made at submit time. Reading accepts every job file the original accepts;
//! this is where "readable" becomes "runnable by ossimport-rs".

use super::{ConfigError, JobConfig, Secret, SrcType};

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
        if self.src_type != SrcType::Local {
            return Err(self.error_at(
                "srcType",
                format!(
                    "srcType={} is not supported yet by ossimport-rs; this version migrates \
                     srcType=local only",
                    self.src_type
                ),
            ));
        }
        if self.src_prefix.is_empty() {
            return Err(self.error_at(
                "srcPrefix",
                "is blank; set it to the absolute directory to import, with / separators and \
                 a trailing / (for example c:/example/ or /home/user/data/)",
            ));
        }
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
                    self.dest_domain
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
    fn refusals_point_at_the_key_line() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "srcType=s3\n",
                "srcType",
                8,
                "srcType=s3 is not supported yet",
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
            assert!(err.to_string().starts_with("conf/local_job.cfg:8: key `"));
        }
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
