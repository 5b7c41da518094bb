//! A module's float parameters as one flat vector of `f32`, in visiting order, and back: what a
//! collective exchanges between ranks and what a federated server averages.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// Why a module's parameters could not be read or set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    /// A parameter's values could not be read back from its device.
    #[error("a parameter's values are unreadable: {0}")]
    Unreadable(String),
    /// The flat vector does not hold as many values as the module has.
    #[error("{given} values for a module of {expected} parameters")]
    Length {
        /// Float parameters the module has.
        expected: usize,
        /// Values given.
        given: usize,
    },
}

/// How many float parameters `module` has (the length of [`parameter_values`]).
pub fn parameter_count<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 += param.shape().num_elements();
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

/// Every float parameter of `module`, flattened and concatenated in visiting order (one read-back per
/// parameter).
pub fn parameter_values<M: Module>(module: &M) -> Result<Vec<f32>, ParamsError> {
    struct Flatten {
        values: Vec<f32>,
        failed: Option<String>,
    }
    impl ModuleVisitor for Flatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.failed.is_some() {
                return;
            }
            match param.val().into_data().convert::<f32>().try_to_vec::<f32>() {
                Ok(v) => self.values.extend(v),
                Err(e) => self.failed = Some(format!("{e:?}")),
            }
        }
    }
    let mut flat = Flatten {
        values: Vec::with_capacity(parameter_count(module)),
        failed: None,
    };
    module.visit(&mut flat);
    match flat.failed {
        Some(e) => Err(ParamsError::Unreadable(e)),
        None => Ok(flat.values),
    }
}

/// `module` with its float parameters set from `values` (as [`parameter_values`] lays them out), each on
/// the device it was on and tracked by autodiff if it was; parameter ids, and so optimizer state keyed by
/// them, are kept.
pub fn with_parameter_values<M: Module>(module: M, values: &[f32]) -> Result<M, ParamsError> {
    let expected = parameter_count(&module);
    if values.len() != expected {
        return Err(ParamsError::Length {
            expected,
            given: values.len(),
        });
    }
    struct Unflatten<'a> {
        values: &'a [f32],
        offset: usize,
    }
    impl ModuleMapper for Unflatten<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                let shape = t.shape();
                let n = shape.num_elements();
                let values = self.values[self.offset..self.offset + n].to_vec();
                self.offset += n;
                let tracked = t.is_require_grad();
                Tensor::from_data(TensorData::new(values, shape), &t.device())
                    .set_require_grad(tracked)
            })
        }
    }
    Ok(module.map(&mut Unflatten { values, offset: 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn values_round_trip_and_lengths_are_checked() {
        let device = Device::flex();
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        assert_eq!(parameter_count(&layer), 8);
        let values: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).collect();
        let set = with_parameter_values(layer.clone(), &values).expect("8 values");
        assert_eq!(parameter_values(&set).expect("readable"), values);
        assert_eq!(set.weight.id, layer.weight.id);
        assert_eq!(
            with_parameter_values(layer, &values[..7]).err(),
            Some(ParamsError::Length {
                expected: 8,
                given: 7
            })
        );
    }
}
