//! Every use of the CPU's vector instructions, in one place: the scans and copies of the hot
//! path that look at 16 or 32 bytes at once. Formatting (`format.rs`) asks which bytes of a
//! line need escaping, and copies plain ones while it asks; framing (`framing.rs`) counts the
//! LFs of a read and looks for a CR. What those answers mean stays in those files.
//!
//! On x86-64, SSE2 is part of the baseline, so SSE2 code runs on every CPU without a check;
//! AVX2 code runs only where `has_avx2` found it (std caches the answer: a check is a load and
//! a test). Other CPUs get portable code written so that the compiler vectorizes it.
//!
//! The rule for `unsafe`: a function that takes slices and needs nothing beyond the baseline
//! is safe. A function that takes raw pointers, or needs a CPU feature its caller must have
//! detected, is an `unsafe fn` whose `# Safety` section says exactly what the caller
//! guarantees, and every call says in a `// SAFETY:` comment why that holds.

/// Bytes looked at once by `first_special` and `Baseline`: one SSE2 (or NEON) register.
pub const CHUNK: usize = 16;

/// True if this CPU has AVX2, so that `Avx2` and other AVX2 code may run.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// What a scan stops at. Records keep printable ASCII as it is (the rest is special, see
/// `format.rs`); a JSON string also quotes `"`; a syslog header field is made of graphic ASCII.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Bytes that are not printable ASCII, and the backslash: LF, tab and other controls,
    /// DEL, bytes of UTF-8 characters, `\`.
    Special,
    /// `Special` bytes and `"`: what a record's text needs done to it in a JSON string.
    JsonSpecial,
    /// Bytes that are not graphic ASCII (`!` to `~`): the space, controls, DEL, bytes from
    /// 0x80.
    NotGraphic,
}

impl Stop {
    /// The smallest byte (as a signed byte, so bytes from 0x80 are below it too) not stopped
    /// at by the range test; DEL and `also` are stopped at besides.
    #[inline(always)]
    fn lowest_kept(self) -> u8 {
        match self {
            Stop::Special | Stop::JsonSpecial => b' ',
            Stop::NotGraphic => b'!',
        }
    }

    /// Bytes within the kept range that stop a scan anyway (`0` for none: it is below the
    /// range, so stopped at already).
    #[inline(always)]
    fn also(self) -> [u8; 2] {
        match self {
            Stop::Special => [b'\\', 0],
            Stop::JsonSpecial => [b'\\', b'"'],
            Stop::NotGraphic => [0, 0],
        }
    }

    #[inline(always)]
    fn stops_at(self, b: u8) -> bool {
        b.wrapping_sub(self.lowest_kept()) > b'~' - self.lowest_kept() || self.also().contains(&b)
    }
}

/// Index of the first special byte of `s` (`Stop::Special`), or `s.len()`. Records are
/// mostly printable ASCII, so this scan is the per-byte cost of the default format: on x86-64
/// it checks 16 bytes with a few SSE2 instructions.
#[inline]
pub fn first_special(s: &[u8]) -> usize {
    first_stop(s, Stop::Special)
}

/// Index of the first byte of `s` that `stop` stops at, or `s.len()`; 16 bytes a step.
#[inline(always)]
pub fn first_stop(s: &[u8], stop: Stop) -> usize {
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + CHUNK) {
        let mask = stop_mask(chunk.try_into().expect("CHUNK bytes"), stop);
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += CHUNK;
    }
    i + s[i..].iter().take_while(|&&b| !stop.stops_at(b)).count()
}

/// Bit `i` set if byte `i` of the chunk is special (see `first_special`).
#[inline]
fn special_mask(chunk: &[u8; CHUNK]) -> u32 {
    stop_mask(chunk, Stop::Special)
}

/// Bit `i` set if `stop` stops at byte `i` of the chunk.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stop_mask(chunk: &[u8; CHUNK], stop: Stop) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has it; `chunk` is 16
    // readable bytes, and the load has no alignment requirement.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        // As signed bytes, controls and every byte from 0x80 are below the space.
        let low = _mm_cmplt_epi8(v, _mm_set1_epi8(stop.lowest_kept() as i8));
        let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
        let mut stops = _mm_or_si128(low, del);
        for b in stop.also() {
            if b != 0 {
                stops = _mm_or_si128(stops, _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)));
            }
        }
        _mm_movemask_epi8(stops) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
use stop_mask_portable as stop_mask;

/// `stop_mask` for any CPU (on x86-64 only checked against the SSE2 one, in the tests).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn stop_mask_portable(chunk: &[u8; CHUNK], stop: Stop) -> u32 {
    // Without early exit, so that the compiler can turn the test into vector compares.
    let mut any = false;
    for &b in chunk {
        any |= stop.stops_at(b);
    }
    if !any {
        return 0;
    }
    chunk
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | (u32::from(stop.stops_at(b)) << i))
}

/// One step of a copy that scans as it goes: `LEN` bytes copied, and which of them are
/// special. A loop generic over it (`format::write_records`) is built once per width, with
/// the step inlined.
///
/// # Safety
/// Implementations copy exactly `LEN` bytes and return a mask with bits only below `LEN`: the
/// caller trusts a set bit to point into the bytes just copied.
pub unsafe trait CopyScan {
    /// Bytes per step.
    const LEN: usize;

    /// Copies `LEN` bytes from `from` to `to` and returns the bit mask of the special ones
    /// (bit `i` for byte `i`, as `first_special` defines special).
    ///
    /// # Safety
    /// `from` must be valid for reads of `LEN` bytes and `to` for writes of `LEN` bytes, the
    /// two must not overlap, and the CPU must have what the implementation needs (`Baseline`:
    /// nothing; `Avx2`: AVX2, found by `has_avx2`).
    unsafe fn copy_scan(from: *const u8, to: *mut u8) -> u32;
}

/// 16 bytes a step: SSE2 on x86-64 (baseline), portable code elsewhere. Runs on any CPU.
pub struct Baseline;

// SAFETY: copies `CHUNK` bytes; `special_mask` sets bits only below `CHUNK`.
unsafe impl CopyScan for Baseline {
    const LEN: usize = CHUNK;

    #[inline(always)]
    unsafe fn copy_scan(from: *const u8, to: *mut u8) -> u32 {
        // SAFETY: as the caller promises, `from` is readable and `to` writable for `CHUNK`
        // bytes and they do not overlap; `[u8; CHUNK]` has no alignment requirement.
        unsafe {
            std::ptr::copy_nonoverlapping(from, to, CHUNK);
            special_mask(&*from.cast::<[u8; CHUNK]>())
        }
    }
}

/// 32 bytes a step, with AVX2: only where `has_avx2` is true.
#[cfg(target_arch = "x86_64")]
pub struct Avx2;

// SAFETY: copies 32 bytes; `_mm256_movemask_epi8` sets one bit per byte of 32.
#[cfg(target_arch = "x86_64")]
unsafe impl CopyScan for Avx2 {
    const LEN: usize = 32;

    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn copy_scan(from: *const u8, to: *mut u8) -> u32 {
        use std::arch::x86_64::{
            __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256,
            _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8, _mm256_storeu_si256,
        };
        // SAFETY: as the caller promises, `from` is readable and `to` writable for 32 bytes
        // (and the CPU has AVX2, which this function is built for); unaligned loads and stores
        // need no alignment.
        let v = unsafe { _mm256_loadu_si256(from.cast::<__m256i>()) };
        // SAFETY: as above.
        unsafe { _mm256_storeu_si256(to.cast::<__m256i>(), v) };
        // As signed bytes, controls and every byte from 0x80 are below 0x20.
        let low = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v);
        let del = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(0x7f));
        let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        _mm256_movemask_epi8(_mm256_or_si256(_mm256_or_si256(low, del), backslash)) as u32
    }
}

/// The number of LFs in `bytes`, or `None` if it holds a CR. One pass over the bytes: on a
/// busy connection this is the framer's whole per-byte cost in raw format. Built twice, for
/// the x86-64 baseline (SSE2) and for AVX2, which counts twice as many bytes per instruction
/// and is used when the CPU has it.
pub fn count_lines_without_cr(bytes: &[u8]) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        return unsafe { count_lines_without_cr_avx2(bytes) };
    }
    count_lines_without_cr_portable(bytes)
}

/// `count_lines_without_cr_portable` built for AVX2.
///
/// # Safety
/// The CPU must have AVX2 (`has_avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_lines_without_cr_avx2(bytes: &[u8]) -> Option<u64> {
    count_lines_without_cr_portable(bytes)
}

/// Written in blocks, without early exit inside one, so the compiler turns it into vector
/// compares and adds.
#[inline(always)]
fn count_lines_without_cr_portable(bytes: &[u8]) -> Option<u64> {
    // Per-block sums fit in a u8 (at most 128), which keeps the vector lanes narrow.
    const BLOCK: usize = 128;
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut lines = 0u64;
    for block in &mut blocks {
        let (mut lf, mut cr) = (0u8, 0u8);
        for &b in block {
            lf += u8::from(b == b'\n');
            cr |= u8::from(b == b'\r');
        }
        if cr != 0 {
            return None;
        }
        lines += u64::from(lf);
    }
    let rest = blocks.remainder();
    if rest.contains(&b'\r') {
        return None;
    }
    Some(lines + rest.iter().filter(|&&b| b == b'\n').count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::testing::stream;

    /// The vector scan flags exactly the bytes the portable one does, at every position, and
    /// those are the bytes each kind of scan is meant to stop at.
    #[test]
    fn stop_mask_portable_agrees() {
        for stop in [Stop::Special, Stop::JsonSpecial, Stop::NotGraphic] {
            for b in 0..=255u8 {
                let meant = match stop {
                    Stop::Special => !(b' '..=b'~').contains(&b) || b == b'\\',
                    Stop::JsonSpecial => !(b' '..=b'~').contains(&b) || b == b'\\' || b == b'"',
                    Stop::NotGraphic => !b.is_ascii_graphic(),
                };
                assert_eq!(stop.stops_at(b), meant, "{stop:?} {b:#x}");
                for pos in 0..CHUNK {
                    let mut chunk = [b'a'; CHUNK];
                    chunk[pos] = b;
                    let expected = if meant { 1 << pos } else { 0 };
                    assert_eq!(stop_mask(&chunk, stop), expected, "{stop:?} {b:#x}@{pos}");
                    assert_eq!(
                        stop_mask_portable(&chunk, stop),
                        expected,
                        "{stop:?} {b:#x}@{pos}"
                    );
                }
                let mut s = vec![b'a'; 40];
                for pos in 0..s.len() {
                    s[pos] = b;
                    assert_eq!(first_stop(&s, stop), if meant { pos } else { s.len() });
                    s[pos] = b'a';
                }
            }
        }
    }

    /// Each copy step copies its bytes and flags exactly the special ones, at every position.
    #[test]
    fn copy_scan_flags_special_bytes() {
        fn check<C: CopyScan>(available: bool) {
            if !available {
                return;
            }
            for b in 0..=255u8 {
                for pos in 0..C::LEN {
                    let mut from = vec![b'a'; C::LEN];
                    from[pos] = b;
                    let mut to = vec![0u8; C::LEN];
                    // SAFETY: both buffers hold `C::LEN` bytes and are distinct; the CPU has
                    // what `C` needs (`available`).
                    let mask = unsafe { C::copy_scan(from.as_ptr(), to.as_mut_ptr()) };
                    assert_eq!(to, from);
                    let expected = if Stop::Special.stops_at(b) {
                        1 << pos
                    } else {
                        0
                    };
                    assert_eq!(mask, expected, "{b:#x}@{pos}");
                }
            }
        }
        check::<Baseline>(true);
        #[cfg(target_arch = "x86_64")]
        check::<Avx2>(has_avx2());
    }

    proptest::proptest! {
        /// Both builds of the line count agree with the obvious count, across block edges.
        #[test]
        fn line_count(
            data in stream(700),
        ) {
            let expected = (!data.contains(&b'\r'))
                .then(|| data.iter().filter(|&&b| b == b'\n').count() as u64);
            proptest::prop_assert_eq!(count_lines_without_cr(&data), expected);
            proptest::prop_assert_eq!(count_lines_without_cr_portable(&data), expected);
        }
    }
}
