//! Location from a MaxMind-format city database (GeoLite2-City, GeoIP2-City,
//! or any database with the same `country` and `location` record layout).
//! The file is read into memory once per change; lookups decode only the
//! fields used here and allocate nothing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::ListError;

/// An ISO 3166-1 alpha-2 country code, e.g. `DE`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country([u8; 2]);

impl Country {
    /// The code if `code` is two ASCII letters (upper-cased).
    pub fn new(code: &str) -> Option<Self> {
        match code.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Always two ASCII letters (see `new`).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_str())
    }
}

impl std::fmt::Display for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an address is, as far as the database knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoPoint {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// The country the address is in, when known (else the country it is
    /// registered to, when known).
    pub country: Option<Country>,
    /// The database's radius of uncertainty around the point, when given.
    pub accuracy_km: Option<u16>,
}

/// An open city database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
    stamp: Stamp,
}

/// What identifies one version of the file without reading it: a reload
/// reuses the open database when the stamp is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    pub(super) fn of(path: &Path) -> Result<Self, ListError> {
        let meta = std::fs::metadata(path).map_err(|e| ListError::Read {
            what: "GeoIP database",
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<CountryRecord<'a>>,
    #[serde(borrow)]
    registered_country: Option<CountryRecord<'a>>,
    location: Option<LocationRecord>,
}

#[derive(serde::Deserialize)]
struct CountryRecord<'a> {
    iso_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct LocationRecord {
    latitude: Option<f64>,
    longitude: Option<f64>,
    accuracy_radius: Option<u16>,
}

impl GeoIp {
    /// Opens the database at `path` (read into memory).
    pub fn open(path: &Path) -> Result<Self, ListError> {
        let stamp = Stamp::of(path)?;
        let bytes = std::fs::read(path).map_err(|e| ListError::Read {
            what: "GeoIP database",
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_bytes(path, bytes, stamp)
    }

    fn from_bytes(path: &Path, bytes: Vec<u8>, stamp: Stamp) -> Result<Self, ListError> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| ListError::GeoIp {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self {
            reader,
            path: path.to_path_buf(),
            stamp,
        })
    }

    /// The location of `ip`: `None` when the database has no coordinates for
    /// it (or cannot answer, e.g. an IPv6 address in an IPv4 database).
    pub fn locate(&self, ip: IpAddr) -> Option<GeoPoint> {
        // IPv4-mapped IPv6 addresses are the IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let found = self.reader.lookup(ip).ok()?;
        let record: Record<'_> = found.decode().ok()??;
        let location = record.location?;
        let (lat, lon) = (location.latitude?, location.longitude?);
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return None;
        }
        let country = [record.country, record.registered_country]
            .into_iter()
            .flatten()
            .find_map(|c| c.iso_code.and_then(Country::new));
        Some(GeoPoint {
            lat,
            lon,
            country,
            accuracy_km: location.accuracy_radius,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// What identifies this version of the database, for the policy revision.
    pub(super) fn fingerprint(&self) -> String {
        let m = self.reader.metadata();
        format!(
            "{}:{}:{}:{}",
            m.database_type, m.build_epoch, m.node_count, self.stamp.len
        )
    }
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.path)
            .field("type", &self.reader.metadata().database_type)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::mmdb_writer::{MmdbWriter, Value};
    use super::*;

    fn db() -> (tempfile::TempDir, PathBuf) {
        let mut w = MmdbWriter::new("GeoLite2-City");
        w.insert("192.0.2.0/24", Value::city("DE", 52.52, 13.405));
        w.insert("198.51.100.0/25", Value::city("AU", -33.87, 151.21));
        w.insert("2001:db8::/32", Value::city("FR", 48.8566, 2.3522));
        // A record with a country but no coordinates.
        w.insert(
            "203.0.113.0/24",
            Value::map([("country", Value::map([("iso_code", Value::str("US"))]))]),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("city.mmdb");
        std::fs::write(&path, w.finish()).unwrap();
        (dir, path)
    }

    #[test]
    fn locates_ipv4_ipv6_and_mapped_addresses() {
        let (_dir, path) = db();
        let g = GeoIp::open(&path).unwrap();
        let berlin = g.locate("192.0.2.77".parse().unwrap()).unwrap();
        assert_eq!(berlin.country.unwrap().as_str(), "DE");
        assert!((berlin.lat - 52.52).abs() < 1e-9 && (berlin.lon - 13.405).abs() < 1e-9);
        assert_eq!(berlin.accuracy_km, Some(20));
        let sydney = g.locate("198.51.100.1".parse().unwrap()).unwrap();
        assert_eq!(sydney.country.unwrap().to_string(), "AU");
        assert!(g.locate("198.51.100.200".parse().unwrap()).is_none());
        let paris = g.locate("2001:db8:1::5".parse().unwrap()).unwrap();
        assert_eq!(paris.country, Country::new("fr"));
        assert_eq!(
            g.locate("::ffff:192.0.2.1".parse().unwrap())
                .map(|p| p.country),
            Some(Country::new("DE"))
        );
        assert!(
            g.locate("203.0.113.5".parse().unwrap()).is_none(),
            "no coordinates"
        );
        assert!(g.locate("10.0.0.1".parse().unwrap()).is_none());
        assert!(g.locate("2001:db9::1".parse().unwrap()).is_none());
    }

    #[test]
    fn bad_databases_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.mmdb");
        std::fs::write(&path, b"not a database").unwrap();
        let e = GeoIp::open(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("invalid GeoIP database `{}`: ", path.display())),
            "{e}"
        );
        let missing = dir.path().join("missing.mmdb");
        let e = GeoIp::open(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "cannot read GeoIP database `{}`: ",
                missing.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn country_codes_are_two_letters() {
        assert_eq!(Country::new("de").unwrap().as_str(), "DE");
        assert!(Country::new("DEU").is_none());
        assert!(Country::new("D1").is_none());
        assert!(Country::new("").is_none());
    }
}
