//! Knowledge distillation (Hinton, Vinyals & Dean 2015): a student trained on a mix of the hard labels and
//! a frozen teacher's temperature-softened predictions.
//!
//! The loss is `α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y)`, the KL divergence averaged
//! over the batch; the `T²` keeps the soft term's gradients on the scale of the hard term's as `T` grows.
//! [`Distillation`] wraps any two classifiers of `kiln-models` (anything the learner trains whose output is a
//! `ClassificationOutput`) so that burn-train's learner trains the student alone.

use crate::CompressError;
use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use kiln_core::{ClassificationOutput, Supervised, loss};

/// Temperature and mixing weight of the distillation loss.
#[derive(Config, Debug, Copy)]
pub struct DistillationConfig {
    /// Softmax temperature `T` (> 0); Hinton et al. used 20 for MNIST.
    #[config(default = 4.0)]
    pub temperature: f64,
    /// Weight `α` of the soft (teacher) term in `[0, 1]`; the hard-label cross-entropy gets `1 − α`.
    #[config(default = 0.9)]
    pub alpha: f64,
}

impl DistillationConfig {
    /// Checks the temperature and weight.
    pub fn check(&self) -> Result<(), CompressError> {
        let temperature_ok = self.temperature > 0.0 && self.temperature.is_finite();
        if !temperature_ok || !(0.0..=1.0).contains(&self.alpha) {
            return Err(CompressError::Config {
                what: "distillation",
                message: format!(
                    "temperature must be positive (got {}) and alpha in [0, 1] (got {})",
                    self.temperature, self.alpha
                ),
            });
        }
        Ok(())
    }
}

/// The distillation loss of `student` logits against `teacher` logits and the true `labels`.
///
/// # Shapes
/// - `student`, `teacher`: `[batch, classes]`; `labels`: `[batch]`
/// - returns `[1]`
pub fn distillation_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    labels: Tensor<1, Int>,
    config: &DistillationConfig,
) -> Tensor<1> {
    let t = config.temperature;
    let [batch, _] = student.dims();
    let log_p_teacher = log_softmax(teacher / t, 1);
    let log_p_student = log_softmax(student.clone() / t, 1);
    let kl = (log_p_teacher.clone().exp() * (log_p_teacher - log_p_student))
        .sum()
        .div_scalar(batch as f64)
        .reshape([1]);
    let hard = loss::cross_entropy(student, labels);
    kl * (config.alpha * t * t) + hard * (1.0 - config.alpha)
}

/// A module whose parameters are hidden from burn's traversals: visitors and mappers (the optimizer, records,
/// parameter counts) never see them, and `train`/`valid` leave it as it is. burn's derive refuses
/// `#[module(skip)]` on a field of generic module type, hence this wrapper.
#[derive(Clone, Debug)]
pub struct Frozen<T>(pub T);

impl<T: Module> Module for Frozen<T> {
    fn visit<V: ModuleVisitor>(&self, _visitor: &mut V) {}

    fn map<M: ModuleMapper>(self, _mapper: &mut M) -> Self {
        self
    }

    fn to_device(self, device: &Device) -> Self {
        Self(self.0.to_device(device))
    }

    fn fork(self, device: &Device) -> Self {
        Self(self.0.fork(device))
    }

    fn collect_devices(&self, devices: Devices) -> Devices {
        self.0.collect_devices(devices)
    }

    fn materialize(self) -> Self {
        self
    }

    fn valid(&self) -> Self {
        self.clone()
    }

    fn train(self) -> Self {
        self
    }
}

impl<T: Module> ModuleDisplayDefault for Frozen<T> {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_formatted(&"frozen").optional()
    }
}

impl<T: Module> ModuleDisplay for Frozen<T> {}

/// A student trained against a frozen teacher: only the student's parameters are trained and saved.
#[derive(Module, Debug)]
pub struct Distillation<S: Module, T: Module> {
    /// The model being trained.
    pub student: S,
    /// The frozen teacher.
    pub teacher: Frozen<T>,
    /// Temperature and weight.
    #[module(skip)]
    pub config: DistillationConfig,
}

impl<S: Module, T: Module> Distillation<S, T> {
    /// Pairs `student` with `teacher`, which is frozen: no gradients and no training behaviour (burn's
    /// `freeze`: its dropout is off and its batch norms use their running statistics; `no_grad` alone would
    /// leave the teacher's dropout on, a noisy teacher).
    pub fn new(student: S, teacher: T, config: DistillationConfig) -> Result<Self, CompressError> {
        config.check()?;
        Ok(Self {
            student,
            teacher: Frozen(teacher.freeze()),
            config,
        })
    }
}

impl<S, T, B> Supervised for Distillation<S, T>
where
    B: Clone + Send + Sync + std::fmt::Debug + 'static,
    S: Supervised<Batch = B, Output = ClassificationOutput>,
    T: Supervised<Batch = B, Output = ClassificationOutput>,
{
    type Batch = B;
    type Output = ClassificationOutput;

    fn forward_step(&self, batch: B) -> ClassificationOutput {
        let teacher = self.teacher.0.forward_step(batch.clone()).output.detach();
        let student = self.student.forward_step(batch);
        let loss = distillation_loss(
            student.output.clone(),
            teacher,
            student.targets.clone(),
            &self.config,
        );
        ClassificationOutput::new(loss, student.output, student.targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(device: &Device) -> (Tensor<2>, Tensor<2>, Tensor<1, Int>) {
        (
            Tensor::from_data([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], device),
            Tensor::from_data([[3.0, 2.0, 1.0], [1.0, 0.0, -1.0]], device),
            Tensor::from_data([0, 2], device),
        )
    }

    #[test]
    fn the_loss_equals_hand_computed_values_with_the_t_squared_factor() {
        let device = Device::flex();
        let (s, t, y) = logits(&device);
        // numpy: KL(softmax(t/2) ‖ softmax(s/2)) batch mean = 0.3342975984138865,
        // CE(s, y) = 1.3244586305507686, 0.5 · 4 · KL + 0.5 · CE = 1.3308245121031574.
        let config = DistillationConfig::new()
            .with_temperature(2.0)
            .with_alpha(0.5);
        let value =
            distillation_loss(s.clone(), t.clone(), y.clone(), &config).into_scalar::<f32>();
        assert!((value - 1.330_824_5).abs() < 1e-5, "{value}");
        // α = 1: only the soft term, T² · KL.
        let soft = DistillationConfig::new()
            .with_temperature(2.0)
            .with_alpha(1.0);
        let value = distillation_loss(s.clone(), t.clone(), y.clone(), &soft).into_scalar::<f32>();
        assert!((value - 4.0 * 0.334_297_6).abs() < 1e-5, "{value}");
        // α = 0: plain cross-entropy.
        let hard = DistillationConfig::new().with_alpha(0.0);
        let value = distillation_loss(s.clone(), t, y, &hard).into_scalar::<f32>();
        assert!((value - 1.324_458_6).abs() < 1e-5, "{value}");
        // A student equal to its teacher has no soft loss.
        let same = distillation_loss(s.clone(), s, Tensor::from_data([2, 2], &device), &soft)
            .into_scalar::<f32>();
        assert!(same.abs() < 1e-6, "{same}");
        assert!(
            DistillationConfig::new()
                .with_temperature(0.0)
                .check()
                .is_err()
        );
        assert!(DistillationConfig::new().with_alpha(1.5).check().is_err());
    }

    #[test]
    fn a_student_learns_from_a_frozen_teacher_on_real_mnist() {
        use burn::data::dataloader::batcher::Batcher;
        use burn::data::dataset::Dataset;
        use burn::optim::{AdamConfig, GradientsParams};
        use kiln_core::StepOutput;
        use kiln_data::{ImageBatcher, ImageFolder, PixelNormalizer};
        use kiln_models::MlpConfig;

        let mnist = ImageFolder::mnist().unwrap();
        let images = mnist.train.take(256);
        let batcher = ImageBatcher::new(PixelNormalizer::fit(&images), 28, 28);
        let device = Device::flex().autodiff();
        let items: Vec<_> = (0..images.len()).map(|i| images.get(i).unwrap()).collect();
        let batches: Vec<_> = items
            .chunks(32)
            .map(|c| batcher.batch(c.to_vec(), &device))
            .collect();
        let mut optim = AdamConfig::new().init();
        device.seed(1);
        let mut teacher = MlpConfig::new(784, vec![64], 10).init(&device).unwrap();
        for _ in 0..3 {
            for b in &batches {
                let grads = GradientsParams::from_grads(
                    teacher.forward_step(b.clone()).loss().backward(),
                    &teacher,
                );
                teacher = optim.step(1e-2, teacher, grads);
            }
        }
        let teacher_weights = teacher.hidden[0].weight.val().into_data();
        let student = MlpConfig::new(784, vec![16], 10).init(&device).unwrap();
        let student_params = Module::num_params(&student);
        let config = DistillationConfig::new()
            .with_temperature(4.0)
            .with_alpha(0.7);
        let mut model = Distillation::new(student, teacher, config).unwrap();
        // Only the student's parameters are the module's.
        assert_eq!(Module::num_params(&model), student_params);
        let mean_loss = |m: &Distillation<kiln_models::Mlp, kiln_models::Mlp>| -> f32 {
            batches
                .iter()
                .map(|b| m.forward_step(b.clone()).loss().into_scalar::<f32>())
                .sum::<f32>()
                / batches.len() as f32
        };
        let before = mean_loss(&model);
        let mut optim = AdamConfig::new().init();
        for _ in 0..3 {
            for b in &batches {
                let grads = GradientsParams::from_grads(
                    model.forward_step(b.clone()).loss().backward(),
                    &model,
                );
                model = optim.step(1e-2, model, grads);
            }
        }
        let after = mean_loss(&model);
        assert!(
            after < 0.6 * before,
            "distillation loss {before:.3} → {after:.3}"
        );
        // The teacher never moved.
        model.teacher.0.hidden[0]
            .weight
            .val()
            .into_data()
            .assert_eq(&teacher_weights, true);
    }

    #[test]
    fn the_teacher_runs_without_dropout_during_training() {
        use burn::tensor::Distribution;
        use kiln_core::StepOutput;
        use kiln_data::ImageBatch;
        use kiln_models::MlpConfig;

        let device = Device::flex().autodiff();
        device.seed(9);
        let teacher = MlpConfig::new(16, vec![32], 4)
            .with_dropout(0.5)
            .init(&device)
            .unwrap();
        let student = MlpConfig::new(16, vec![8], 4).init(&device).unwrap();
        let model = Distillation::new(student, teacher, DistillationConfig::new()).unwrap();
        let batch = ImageBatch {
            images: Tensor::<3>::random([8, 4, 4], Distribution::Default, &device),
            labels: Tensor::from_data([0, 1, 2, 3, 0, 1, 2, 3], &device),
        };
        // The student has no dropout, so with a frozen teacher the loss is the same every time.
        let a = model
            .forward_step(batch.clone())
            .loss()
            .into_scalar::<f32>();
        let b = model.forward_step(batch).loss().into_scalar::<f32>();
        assert_eq!(a, b);
    }
}
