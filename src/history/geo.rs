//! Distances and implied travel speeds between two places.

use super::model::Place;

/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Closer than this counts as no travel: IP geolocation is city-level at
/// best, so smaller moves are noise.
pub const MIN_TRAVEL_KM: f64 = 50.0;

/// Shorter intervals count as this long (ms): two requests a second apart
/// from nearby cities must not read as millions of km/h.
pub const MIN_INTERVAL_MS: i64 = 60_000;

/// Great-circle distance in km between two (latitude, longitude) points in
/// degrees (haversine).
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The speed (km/h) implied by going from `from` to `to`; 0.0 when either
/// has no coordinates or the distance is under [`MIN_TRAVEL_KM`].
pub fn travel_kmh(from: &Place, to: &Place) -> f64 {
    let (Some(a), Some(b)) = (from.coords, to.coords) else {
        return 0.0;
    };
    let km = haversine_km(a, b);
    if !km.is_finite() || km < MIN_TRAVEL_KM {
        return 0.0;
    }
    let ms = to.at.saturating_sub(from.at).max(MIN_INTERVAL_MS);
    km / (ms as f64 / 3_600_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERLIN: (f64, f64) = (52.52, 13.405);
    const SYDNEY: (f64, f64) = (-33.8688, 151.2093);
    const MUNICH: (f64, f64) = (48.1351, 11.582);

    fn at(coords: (f64, f64), at: i64) -> Place {
        Place {
            at,
            country: None,
            coords: Some(coords),
        }
    }

    #[test]
    fn distances_and_speeds() {
        let d = haversine_km(BERLIN, SYDNEY);
        assert!((16_000.0..16_200.0).contains(&d), "{d}");
        let hour = 3_600_000;
        let v = travel_kmh(&at(BERLIN, 0), &at(SYDNEY, hour));
        assert!(v > 15_000.0, "{v}");
        // Berlin to Munich (~500 km) in 6 hours: a train.
        let v = travel_kmh(&at(BERLIN, 0), &at(MUNICH, 6 * hour));
        assert!((70.0..100.0).contains(&v), "{v}");
        // Jitter within a city is no travel; an instant counts as a minute.
        assert_eq!(travel_kmh(&at(BERLIN, 0), &at((52.53, 13.41), 1)), 0.0);
        let v = travel_kmh(&at(BERLIN, 0), &at(MUNICH, 0));
        assert!((v - 504.0 * 60.0).abs() < 1000.0, "{v}");
    }
}
