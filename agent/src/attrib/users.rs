//! uid -> user name for `process.owner`, from the host's passwd file.
//!
//! The host's file names host users. A container's processes are named as the host knows their
//! uids (often not at all: then the number), which is what `ps` on the host shows too.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use tracing::debug;

/// The shortest time between two reads of the file when a uid is not in it (a user added
/// since, or one that is not there at all and is asked about with every flow).
pub const MIN_RELOAD: Duration = Duration::from_secs(10);

/// Names of uids, read from a passwd file on first use and again (rate-limited) on a miss.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    names: HashMap<u32, String>,
    loaded_at: Option<Instant>,
    min_reload: Duration,
}

impl Default for Users {
    fn default() -> Users {
        Users::new()
    }
}

impl Users {
    /// Names from `/etc/passwd`.
    pub fn new() -> Users {
        Users::from_file("/etc/passwd")
    }

    pub fn from_file(path: impl Into<PathBuf>) -> Users {
        Users {
            path: path.into(),
            names: HashMap::new(),
            loaded_at: None,
            min_reload: MIN_RELOAD,
        }
    }

    /// Sets the shortest time between two reads (default [`MIN_RELOAD`]).
    pub fn with_min_reload(mut self, every: Duration) -> Users {
        self.min_reload = every;
        self
    }

    /// The user name of `uid`, or the uid as a number when it has none.
    pub fn name(&mut self, uid: u32) -> String {
        if !self.names.contains_key(&uid)
            && self
                .loaded_at
                .is_none_or(|t| t.elapsed() >= self.min_reload)
        {
            self.reload();
        }
        match self.names.get(&uid) {
            Some(name) => name.clone(),
            None => uid.to_string(),
        }
    }

    fn reload(&mut self) {
        self.loaded_at = Some(Instant::now());
        match std::fs::read_to_string(&self.path) {
            Ok(text) => self.names = parse_passwd(&text),
            Err(e) => debug!(path = %self.path.display(), error = %e, "cannot read users"),
        }
    }
}

/// uid -> name from passwd lines (`name:password:uid:gid:gecos:home:shell`). The first line
/// for a uid wins, as with getpwuid(3); comments, NIS `+`/`-` entries and malformed lines are
/// passed over.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        if line.starts_with(['#', '+', '-']) {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        if !name.is_empty() {
            names.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::testdir::TestDir;

    /// Debian 12's file, shortened, with the odd lines real files carry.
    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
toor:x:0:0:second root:/root:/bin/sh
broken line
:x:5:5::/:/bin/false
nfsnobody:x:65534:65534:Anonymous NFS User:/var/lib/nfs:/sbin/nologin
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
+@netgroup::::::
";

    #[test]
    fn passwd_lines_give_names_and_the_first_wins() {
        let names = parse_passwd(PASSWD);
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(names.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(names.get(&65534).map(String::as_str), Some("nfsnobody"));
        assert_eq!(names.get(&5), None, "an empty name is no name");
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn unknown_uids_are_numbers_and_misses_reload_at_most_once_per_interval() {
        let dir = TestDir::new("users");
        let path = dir.write("passwd", PASSWD);
        let mut users = Users::from_file(&path).with_min_reload(Duration::from_secs(3600));
        assert_eq!(users.name(33), "www-data");
        assert_eq!(users.name(4242), "4242");
        std::fs::write(
            &path,
            format!("{PASSWD}bob:x:4242:4242::/home/bob:/bin/sh\n"),
        )
        .expect("rewrite");
        assert_eq!(users.name(4242), "4242", "read a moment ago");
        let mut users = users.with_min_reload(Duration::ZERO);
        assert_eq!(users.name(4242), "bob");
        // A file that cannot be read keeps what was known and names nobody new.
        std::fs::remove_file(&path).expect("rm");
        assert_eq!(users.name(4243), "4243");
        assert_eq!(users.name(4242), "bob");
        assert_eq!(Users::from_file(dir.path().join("none")).name(0), "0");
    }

    #[test]
    fn this_host_names_root() {
        assert_eq!(Users::new().name(0), "root");
    }
}
