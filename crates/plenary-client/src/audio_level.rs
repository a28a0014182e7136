//! The audio level of each Opus frame a file publishes, for the RFC 6464
//! header extension (client-to-mixer audio level indication).
//!
//! A microphone client measures the level of what it captures before
//! encoding; a file's frames are already encoded, so they are decoded once
//! when the file is loaded (pure-Rust `opus-rs`) and each frame's level
//! is kept beside it. The SFU reads the level in clear to find the active
//! speaker and the loudest speakers whose audio it forwards
//! (DESIGN.md, Media path); the audio itself stays end-to-end encrypted.

use opus_rs::OpusDecoder;

/// Frames at or louder than this (-dBov) are flagged as voice (the V bit
/// of RFC 6464 §3).
pub const VOICE_LEVEL: u8 = 50;

/// Decoding rate for measuring: speech energy is below 8 kHz.
const MEASURE_RATE: i32 = 16_000;
/// Longest Opus packet: 120 ms, in samples at [`MEASURE_RATE`].
const MAX_SAMPLES: usize = (MEASURE_RATE as usize) * 120 / 1000;

/// Level of each packet in -dBov (RFC 6464 §3: 0 is the loudest, 127 is
/// silence or quieter), in order; `None` for a packet that does not decode
/// (it is then sent without the extension). About 40 µs per 20 ms frame.
pub fn opus_levels<'a>(packets: impl IntoIterator<Item = &'a [u8]>) -> Vec<Option<u8>> {
    let mut decoder = OpusDecoder::new(MEASURE_RATE, 1).ok();
    let mut pcm = vec![0f32; MAX_SAMPLES];
    packets
        .into_iter()
        .map(|p| {
            let d = decoder.as_mut()?;
            // A third-party decoder fed a local file: a packet it cannot
            // take (an error or even a panic) only loses that frame's level.
            let n = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.decode(p, MAX_SAMPLES, &mut pcm)))
                .ok()?
                .ok()?;
            Some(dbov(&pcm[..n.min(pcm.len())]))
        })
        .collect()
}

/// RFC 6464 level of samples in [-1, 1]: the RMS in dB below full scale,
/// as a positive number, 127 for silence.
pub fn dbov(samples: &[f32]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let mean_square = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>() / samples.len() as f64;
    if mean_square <= 0.0 {
        return 127;
    }
    let db = -10.0 * mean_square.log10();
    db.round().clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_is_zero_and_silence_is_127() {
        assert_eq!(dbov(&[1.0, -1.0, 1.0, -1.0]), 0);
        assert_eq!(dbov(&[0.0; 320]), 127);
        assert_eq!(dbov(&[]), 127);
        // A sine at -20 dBFS peak has an RMS of -23 dBov.
        let sine: Vec<f32> = (0..320).map(|i| 0.1 * (i as f32 * 0.3).sin()).collect();
        assert_eq!(dbov(&sine), 23);
    }

    #[test]
    fn garbage_is_no_level_not_a_panic() {
        let levels = opus_levels([&[][..], &[0xff; 3][..], &[0x00; 1][..]]);
        assert_eq!(levels.len(), 3);
    }
}
