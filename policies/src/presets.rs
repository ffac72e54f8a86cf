//! Presets shipped with Verity (`policies/presets/*.toml`, compiled into the binary).

/// Names of the shipped presets.
pub const PRESETS: &[&str] = &["default", "strict", "trusted"];

pub(crate) fn preset_source(name: &str) -> Option<&'static str> {
    match name {
        "default" => Some(include_str!("../presets/default.toml")),
        "strict" => Some(include_str!("../presets/strict.toml")),
        "trusted" => Some(include_str!("../presets/trusted.toml")),
        _ => None,
    }
}
