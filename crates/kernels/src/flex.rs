//! Raw `f32` access to burn-flex tensors, shared by the kernels' backend extensions.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Bytes, DType, Shape};
use burn::prelude::*;

/// Whether `t` is an f32 tensor on burn's flex backend (with or without autodiff: device equality ignores
/// it), where the fused kernels run.
pub fn on_flex_f32<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && t.device() == Device::flex()
}

/// A dense f32 copy of `t` (an `Arc` clone when it already is): gradients arriving from slices and
/// broadcasts are often strided views.
pub(crate) fn dense(t: &FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "Kiln's fused kernels are f32 only");
    t.to_contiguous()
}

/// The elements of a tensor returned by [`dense`].
pub(crate) fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a dense f32 flex tensor has a contiguous slice")
}

/// A contiguous flex tensor owning `data`.
pub(crate) fn tensor(data: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(dims.to_vec())),
        DType::F32,
    )
}
