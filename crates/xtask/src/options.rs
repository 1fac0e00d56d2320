//! The options of `cargo xtask dist`: `--only A,B` (some of the artifacts) and
//! `--package-version V` (the version the .deb, .rpm and MSI carry instead of the workspace's).

/// What `--only` can name.
const ARTIFACTS: [&str; 5] = ["linux-zip", "windows-zip", "deb", "rpm", "msi"];

pub const USAGE: &str = "usage: cargo xtask dist [--only linux-zip,windows-zip,deb,rpm,msi] [--package-version VERSION]";

/// `dist`'s options: the artifacts to build (all by default) and the packages' version.
#[derive(Debug, Default)]
pub struct Options {
    pub only: Option<Vec<String>>,
    pub package_version: Option<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().cloned().ok_or_else(|| USAGE.to_owned());
            match arg.as_str() {
                "--only" => {
                    let only: Vec<String> = value()?.split(',').map(str::to_owned).collect();
                    if let Some(unknown) = only.iter().find(|a| !ARTIFACTS.contains(&a.as_str())) {
                        return Err(format!(
                            "--only {unknown}: not one of {}",
                            ARTIFACTS.join(", ")
                        ));
                    }
                    options.only = Some(only);
                }
                "--package-version" => options.package_version = Some(value()?),
                _ => return Err(USAGE.to_owned()),
            }
        }
        Ok(options)
    }

    pub fn wants(&self, artifact: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|a| a == artifact))
    }
}
