"""The Modality Contribution Ratio (MCR, ``workflow/rules/mcr.smk``): Monte Carlo functional entropy on the KV cache.

For one prompt, ``f`` is the model's probability of one answer (by default its own clean answer).
Gaussian noise on the cached keys and values of one modality's positions, in every decoder layer,
makes ``f`` a random variable; how much it varies says how much the answer rests on that modality.
Two estimators are reported, both from the same ``N`` samples:

* the functional entropy ``Ent(f) = E[f log f] - E[f] log E[f]``;
* the Fisher-information term of the Gaussian log-Sobolev inequality, ``E[|grad f|^2 / f]``, with the
  gradient taken with respect to the standard normal noise ``eps`` (the perturbation is
  ``sigma * spread * eps``), so that ``Ent(f) <= E[|grad f|^2 / f] / 2`` holds for every ``f``.

``MCS_m`` is modality ``m``'s score and ``MCR = MCS_text / (MCS_text + MCS_image)``: near 1 the answer
rests on the text, near 0 on the image. Beside it each record gets the input ablation
(:mod:`amps.mcr.ablation`): how far the answer moves when the image is emptied or the context left
out, on the same scale, the yardstick the MCR is checked against (it needs no ground truth), and the
answer-position ablation: the modality hidden from the answer position only, all the MCR's noise can reach.

Choices, and why:

* The prompt is the plain conflict prompt (no instruction). Each record is estimated in both option
  orders and ``MCS_m`` is the mean of the two orders' scores, so that the answer letter's own
  position (A or B) cannot dominate; the per-order scores are kept in the table.
* ``f`` is the softmax over the two option tokens (A, B) only: the quantity of interest is which
  option the model prefers, not how sure it is that an option letter comes next at all. The two
  option logits are computed in float32 from the final hidden state (after the final norm) and the
  output layer's two rows (:func:`option_logits_float32`), whatever the model's dtype: a bf16 output
  layer rounds letter logits of 16-32 to steps of 0.125, noise that would inflate the entropy.
* "Text positions" are, by default (``text: context``), the tokens of the text context: the text
  evidence that conflicts with the image. The question, the options and the answer line are needed
  whichever modality the answer rests on (noise on an option line scrambles which letter names which
  value), so counting them as text made the MCR blind to the evidence: on a trained toy, removing
  the context moved it by about 0.01 although the answer switched to the image. ``text: prompt``
  takes the whole user prompt instead. Never the chat template's fixed tokens. A prompt without a
  context has no text evidence: its text score is 0. "Image positions" are the image tokens.
* The noise scale is ``sigma`` times the per-channel spread: the standard deviation (population, so
  a single position gives zero noise rather than NaN) over the modality's positions of each key and
  value channel, per layer and head.
* The prompt is prefilled once. Its last position is cropped from the cache and fed again against
  ``N`` perturbed copies of the cache in batched one-token forwards (at most ``max_batch`` rows per
  pass, fewer where a GPU's free memory holds fewer, halved if a pass runs out of memory); the
  prefill is never re-run. A row holds only its own copy of the perturbed entries; the
  clean entries of the other positions are shared by all rows through a split attention
  (:func:`split_attention`, registered with transformers' attention interface), which reads them
  once per pass. The cost beyond the prefill thus follows the perturbed entries, not the cache.
* Memory: a pass holds one copy of the perturbed entries per row and little more. Each sample's
  noise is drawn into a one-sample buffer and written into its row, the rows' entries reach the
  attention without a cache (which would concatenate the fed token onto a copy of them), and the
  Fisher term's gradient is reduced to squared norms layer by layer as the backward pass produces it.
* The Fisher term's gradient is taken by autograd with respect to the perturbed entries and mapped
  to the noise by the chain rule (the perturbation is affine), in the same pass as ``f``.
* Randomness: each (record, option order, modality) has its own generator seeded from the config
  seed, the record id and the settings' ``stream`` name (empty for the main run; a re-estimate
  under another name draws independently of it); the samples are drawn from it one after another.
  A record's numbers thus depend neither on its shard nor on ``max_batch`` (on a given device type).
* Standard errors are delta-method Monte Carlo errors; they fall as ``1/sqrt(N)``. A non-finite
  sample is never averaged away: the record's estimates become NaN and its ``problem`` column says
  which order, modality and estimator failed.
"""
