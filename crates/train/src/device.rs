//! The run-time choice of backend: one model, any device.

use crate::TrainError;
use burn::prelude::Device;
use std::fmt;
use std::str::FromStr;

/// A backend Kiln can run on. Which ones exist depends on the cargo features the build enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// burn's pure-Rust CPU backend (feature `flex`), the default.
    Flex,
    /// The ndarray CPU backend (feature `ndarray`).
    Ndarray,
    /// The first GPU found by wgpu (feature `wgpu`); Vulkan's software driver when there is no GPU.
    Wgpu,
    /// The CUDA GPU of this index (feature `cuda`), `cuda` or `cuda:N`.
    Cuda(usize),
}

impl DeviceChoice {
    /// The names of the devices this build offers, in order of preference.
    pub fn available() -> Vec<&'static str> {
        let mut names = Vec::new();
        if cfg!(feature = "flex") {
            names.push("flex");
        }
        if cfg!(feature = "ndarray") {
            names.push("ndarray");
        }
        if cfg!(feature = "wgpu") {
            names.push("wgpu");
        }
        if cfg!(feature = "cuda") {
            names.push("cuda");
        }
        names
    }

    /// The CPU default: `flex` (see README, "Picking the CPU default", for the measurements behind it).
    pub fn cpu_default() -> Result<Self, TrainError> {
        Self::available()
            .first()
            .ok_or_else(|| TrainError::InvalidConfig("no backend feature enabled".into()))?
            .parse()
    }

    /// The burn device (without autodiff; the learner adds it).
    pub fn device(self) -> Device {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex => Device::flex(),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Self::Ndarray => Device::ndarray(),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "cuda")]
            Self::Cuda(index) => Device::cuda(index),
            #[allow(unreachable_patterns)]
            other => unreachable!("{other} is only constructed when its feature is enabled"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = TrainError;

    /// Parses `flex`, `ndarray`, `wgpu`, `cuda` or `cuda:N`; a name whose feature is off is an error that
    /// lists what is on.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let cuda_index = match lower.strip_prefix("cuda") {
            Some("") => Some(0),
            Some(rest) => rest.strip_prefix(':').and_then(|n| n.parse().ok()),
            None => None,
        };
        let choice = match lower.as_str() {
            "flex" if cfg!(feature = "flex") => Self::Flex,
            "ndarray" if cfg!(feature = "ndarray") => Self::Ndarray,
            "wgpu" if cfg!(feature = "wgpu") => Self::Wgpu,
            _ if cfg!(feature = "cuda") && cuda_index.is_some() => {
                Self::Cuda(cuda_index.unwrap_or_default())
            }
            _ => {
                return Err(TrainError::UnknownDevice {
                    name: s.to_string(),
                    available: Self::available().join(", "),
                });
            }
        };
        Ok(choice)
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flex => f.write_str("flex"),
            Self::Ndarray => f.write_str("ndarray"),
            Self::Wgpu => f.write_str("wgpu"),
            Self::Cuda(0) => f.write_str("cuda"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compiled_devices_and_rejects_others() {
        for name in DeviceChoice::available() {
            assert_eq!(name.parse::<DeviceChoice>().unwrap().to_string(), name);
        }
        let err = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.to_string().contains("unknown device `tpu`"), "{err}");
    }
}
