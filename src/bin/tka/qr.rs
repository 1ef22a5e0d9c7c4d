//! QR codes of requests and tokens: in the terminal (Unicode half blocks)
//! and as PNG or SVG images (`--qr`, `--qr-out FILE`).

use crate::output::say;
use clap::Args;
use qrcode::{Color, EcLevel, QrCode};
use std::path::{Path, PathBuf};
use tka::fsutil::{self, Overwrite};
use tka::{Error, Result};

/// Modules of light margin around the code (the quiet zone the standard asks for).
const QUIET: usize = 4;
/// Pixels per module in a PNG.
const PNG_SCALE: usize = 8;
/// The most bytes a QR code holds (version 40, error correction level L).
pub const MAX_QR_BYTES: usize = 2953;

/// `--qr` and `--qr-out`.
#[derive(Args, Debug, Clone)]
pub struct QrArgs {
    /// Also print the result as a QR code in the terminal (Unicode half blocks)
    #[arg(long)]
    pub qr: bool,
    /// Also write the result as a QR code image: FILE.png or FILE.svg
    #[arg(long, value_name = "FILE")]
    pub qr_out: Option<PathBuf>,
}

impl QrArgs {
    /// Whether any QR output is asked for.
    pub fn wanted(&self) -> bool {
        self.qr || self.qr_out.is_some()
    }

    /// Checks the arguments before anything is done: the image file's
    /// extension, and that it does not exist yet (unless `force`).
    pub fn check(&self, force: bool) -> Result<()> {
        if let Some(p) = &self.qr_out {
            image_kind(p)?;
            if !force && p.exists() {
                return Err(Error::Exists { path: p.clone() });
            }
        }
        Ok(())
    }

    /// Encodes `text` (`what`: "token" or "request") and prints and writes
    /// what was asked for.
    pub fn emit(&self, text: &str, what: &str, force: bool) -> Result<()> {
        if !self.wanted() {
            return Ok(());
        }
        let code = encode(text, what)?;
        if let Some(p) = &self.qr_out {
            let bytes = match image_kind(p)? {
                ImageKind::Png => png(&code)?,
                ImageKind::Svg => svg(&code).into_bytes(),
            };
            let overwrite = if force { Overwrite::Replace } else { Overwrite::Refuse };
            fsutil::write_atomic(p, &bytes, 0o644, overwrite).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::Exists { path: p.clone() }
                } else {
                    Error::Io { path: p.clone(), source: e }
                }
            })?;
        }
        if self.qr {
            for line in terminal(&code) {
                say(line);
            }
        }
        if let Some(p) = &self.qr_out {
            say(format!("qr code: {}", p.display()));
        }
        Ok(())
    }
}

enum ImageKind {
    Png,
    Svg,
}

fn image_kind(p: &Path) -> Result<ImageKind> {
    match p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => Ok(ImageKind::Png),
        Some("svg") => Ok(ImageKind::Svg),
        _ => Err(Error::Usage(format!("--qr-out {}: the file name must end in .png or .svg", p.display()))),
    }
}

/// The QR code of `text`: error correction level M where it fits, L
/// otherwise; a text too large for any QR code is refused, with a hint
/// for tokens.
pub fn encode(text: &str, what: &str) -> Result<QrCode> {
    let data = text.trim().as_bytes();
    QrCode::with_error_correction_level(data, EcLevel::M)
        .or_else(|_| QrCode::with_error_correction_level(data, EcLevel::L))
        .map_err(|_| {
            let advice =
                if what == "token" { ": issue a compact token (`tka token issue --compact`), about 1 KB" } else { "" };
            Error::Usage(format!(
                "the {what} is {} bytes, more than a QR code holds ({MAX_QR_BYTES} bytes){advice}",
                data.len()
            ))
        })
}

/// Whether the module at (`x`, `y`) of the code with its quiet zone is dark.
fn dark(code: &QrCode, x: usize, y: usize) -> bool {
    let w = code.width();
    if x < QUIET || y < QUIET || x >= w + QUIET || y >= w + QUIET {
        return false;
    }
    code[(x - QUIET, y - QUIET)] == Color::Dark
}

/// The code as lines of Unicode half blocks, two modules a character, with
/// its quiet zone. Light modules are drawn (as `qrencode -t UTF8` does), so
/// the code reads on a terminal's dark background.
pub fn terminal(code: &QrCode) -> Vec<String> {
    let side = code.width() + 2 * QUIET;
    (0..side.div_ceil(2))
        .map(|row| {
            (0..side)
                .map(|x| {
                    let top = !dark(code, x, 2 * row);
                    let bottom = 2 * row + 1 < side && !dark(code, x, 2 * row + 1);
                    match (top, bottom) {
                        (true, true) => '\u{2588}',
                        (true, false) => '\u{2580}',
                        (false, true) => '\u{2584}',
                        (false, false) => ' ',
                    }
                })
                .collect()
        })
        .collect()
}

/// The code as a grey-scale PNG, black on white, [`PNG_SCALE`] pixels a module.
pub fn png(code: &QrCode) -> Result<Vec<u8>> {
    let side = (code.width() + 2 * QUIET) * PNG_SCALE;
    let mut pixels = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            pixels.push(if dark(code, x / PNG_SCALE, y / PNG_SCALE) { 0 } else { 255 });
        }
    }
    let mut out = Vec::new();
    let fail = |e: png::EncodingError| Error::Usage(format!("cannot encode the PNG image: {e}"));
    let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(fail)?;
    w.write_image_data(&pixels).map_err(fail)?;
    w.finish().map_err(fail)?;
    Ok(out)
}

/// The code as an SVG image: one path of unit squares, black on white.
pub fn svg(code: &QrCode) -> String {
    let side = code.width() + 2 * QUIET;
    let mut path = String::new();
    for y in 0..side {
        for x in 0..side {
            if dark(code, x, y) {
                path += &format!("M{x} {y}h1v1h-1z");
            }
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" \
         width=\"{px}\" height=\"{px}\" shape-rendering=\"crispEdges\">\n<rect width=\"{side}\" height=\"{side}\" \
         fill=\"#fff\"/>\n<path fill=\"#000\" d=\"{path}\"/>\n</svg>\n",
        px = side * PNG_SCALE
    )
}
