# Remote-code processor for the harness's tiny offline Phi-4-multimodal ("phi4mm") model.
#
# Written by harness/models (vllm-rocm-harness). An own, offline implementation with the same
# semantics and output keys as Microsoft's Phi-4-multimodal-instruct `processing_phi4mm.py`:
#   - images: dynamic-HD 448 px crops (crop grid chosen from the image size / aspect ratio, at most
#     `dynamic_hd` sub-crops), one global 448x448 crop first, a 32x32 attention mask per crop, all
#     images of one call padded to the same crop count (pixels with 0, masks with 1);
#   - audio: 80-bin log-mel features at 16 kHz (25 ms window, 10 ms hop);
#   - text: `<|image_i|>` / `<|audio_i|>` placeholders become <|endoftext10|> (id 200010) /
#     <|endoftext11|> (id 200011), each expanded to the item's number of embedding tokens.
# Needs only numpy, Pillow, torch and transformers (no torchvision).
"""Phi4MM processor (tiny offline variant)."""

import json
import math
import os
import re

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_base import ImageProcessingMixin
from transformers.processing_utils import ProcessorMixin

_IMAGE_SPECIAL_TOKEN = "<|endoftext10|>"
_AUDIO_SPECIAL_TOKEN = "<|endoftext11|>"
_IMAGE_SPECIAL_TOKEN_ID = 200010
_AUDIO_SPECIAL_TOKEN_ID = 200011
_IMAGE_PLACEHOLDER_RE = re.compile(r"<\|image_\d+\|>")
_AUDIO_PLACEHOLDER_RE = re.compile(r"<\|audio_\d+\|>")

PREPROCESSOR_CONFIG = "preprocessor_config.json"


class Phi4MMImageProcessor(ImageProcessingMixin):
    """Dynamic-HD image processor (448 px crops, 14 px patches -> 32x32 masks)."""

    model_input_names = ["input_image_embeds", "image_sizes", "image_attention_mask"]

    def __init__(self, dynamic_hd=36, **kwargs):
        super().__init__(**kwargs)
        self.dynamic_hd = int(dynamic_hd)

    def find_closest_aspect_ratio(self, aspect_ratio, target_ratios, width, height, image_size):
        best_ratio_diff = float("inf")
        best_ratio = (1, 1)
        area = width * height
        for ratio in target_ratios:
            target_aspect_ratio = ratio[0] / ratio[1]
            ratio_diff = abs(aspect_ratio - target_aspect_ratio)
            if ratio_diff < best_ratio_diff:
                best_ratio_diff = ratio_diff
                best_ratio = ratio
            elif ratio_diff == best_ratio_diff:
                if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                    best_ratio = ratio
        return best_ratio

    def target_grid(self, orig_width, orig_height, image_size=448, min_num=1, max_num=None):
        """(w_crops, h_crops) of the HD grid for an image of this size."""
        max_num = self.dynamic_hd if max_num is None else max_num
        w_crop_num = math.ceil(orig_width / float(image_size))
        h_crop_num = math.ceil(orig_height / float(image_size))
        if w_crop_num * h_crop_num > max_num:
            aspect_ratio = orig_width / orig_height
            target_ratios = set(
                (i, j)
                for n in range(min_num, max_num + 1)
                for i in range(1, n + 1)
                for j in range(1, n + 1)
                if min_num <= i * j <= max_num
            )
            target_ratios = sorted(target_ratios, key=lambda x: x[0] * x[1])
            return self.find_closest_aspect_ratio(aspect_ratio, target_ratios, orig_width, orig_height, image_size)
        return (w_crop_num, h_crop_num)

    def dynamic_preprocess(self, image, min_num=1, max_num=12, image_size=448, mask_size=32):
        orig_width, orig_height = image.size
        target_aspect_ratio = self.target_grid(orig_width, orig_height, image_size, min_num, max_num)
        target_width = image_size * target_aspect_ratio[0]
        target_height = image_size * target_aspect_ratio[1]

        ratio_width = target_width / orig_width
        ratio_height = target_height / orig_height
        if ratio_width < ratio_height:
            new_size = (target_width, int(orig_height * ratio_width))
            padding_width = 0
            padding_height = target_height - int(orig_height * ratio_width)
        else:
            new_size = (int(orig_width * ratio_height), target_height)
            padding_width = target_width - int(orig_width * ratio_height)
            padding_height = 0

        attention_mask = torch.ones((int(mask_size * target_aspect_ratio[1]), int(mask_size * target_aspect_ratio[0])))
        if padding_width >= 14:
            attention_mask[:, -math.floor(padding_width / 14):] = 0
        if padding_height >= 14:
            attention_mask[-math.floor(padding_height / 14):, :] = 0
        assert attention_mask.sum() > 0

        if min(new_size[1], target_height) < 10 or min(new_size[0], target_width) < 10:
            raise ValueError(f"the aspect ratio is very extreme {new_size}")

        image = image.resize((new_size[0], new_size[1]), resample=Image.BILINEAR)
        padded = Image.new("RGB", (target_width, target_height), (255, 255, 255))
        padded.paste(image, (0, 0))
        return padded, attention_mask

    @staticmethod
    def _to_tensor(image):
        arr = np.asarray(image, dtype=np.float32) / 255.0  # HWC
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return (t - 0.5) / 0.5

    @staticmethod
    def pad_to_max_num_crops(images, max_crops=5):
        B, _, H, W = images.shape
        if B < max_crops:
            pad = torch.zeros(max_crops - B, 3, H, W, dtype=images.dtype, device=images.device)
            images = torch.cat([images, pad], dim=0)
        return images

    @staticmethod
    def pad_mask_to_max_num_crops(masks, max_crops=5):
        B, H, W = masks.shape
        if B < max_crops:
            pad = torch.ones(max_crops - B, H, W, dtype=masks.dtype, device=masks.device)
            masks = torch.cat([masks, pad], dim=0)
        return masks

    def __call__(self, images, return_tensors=None, **kwargs):
        return self.preprocess(images, return_tensors=return_tensors)

    def preprocess(self, images, return_tensors=None, **kwargs):
        if not isinstance(images, (list, tuple)):
            images = [images]
        base_resolution = 448
        mask_resolution = base_resolution // 14
        images = [self._to_pil(im).convert("RGB") for im in images]
        elems, image_attention_masks = [], []
        for im in images:
            elem, attention_mask = self.dynamic_preprocess(
                im, max_num=self.dynamic_hd, image_size=base_resolution, mask_size=mask_resolution
            )
            elems.append(elem)
            image_attention_masks.append(attention_mask)
        hd_images = [self._to_tensor(im) for im in elems]
        global_image = [
            torch.nn.functional.interpolate(
                im.unsqueeze(0).float(), size=(base_resolution, base_resolution), mode="bicubic"
            ).to(im.dtype)
            for im in hd_images
        ]
        shapes = [[im.size(1), im.size(2)] for im in hd_images]
        mask_shapes = [[mask.size(0), mask.size(1)] for mask in image_attention_masks]
        global_attention_mask = [torch.ones((1, mask_resolution, mask_resolution)) for _ in hd_images]
        hd_images_reshape = [
            im.reshape(1, 3, h // base_resolution, base_resolution, w // base_resolution, base_resolution)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(-1, 3, base_resolution, base_resolution)
            .contiguous()
            for im, (h, w) in zip(hd_images, shapes)
        ]
        attention_masks_reshape = [
            mask.reshape(1, h // mask_resolution, mask_resolution, w // mask_resolution, mask_resolution)
            .permute(0, 1, 3, 2, 4)
            .reshape(-1, mask_resolution, mask_resolution)
            .contiguous()
            for mask, (h, w) in zip(image_attention_masks, mask_shapes)
        ]
        half = mask_resolution // 2 + mask_resolution % 2
        downsample_attention_masks = [
            mask[:, 0::2, 0::2]
            .reshape(1, h // mask_resolution, w // mask_resolution, half, half)
            .permute(0, 1, 3, 2, 4)
            for mask, (h, w) in zip(attention_masks_reshape, mask_shapes)
        ]
        downsample_attention_masks = [
            mask.reshape(mask.size(1) * mask.size(2), mask.size(3) * mask.size(4))
            for mask in downsample_attention_masks
        ]
        num_img_tokens = [
            256 + 1 + int(mask.sum().item()) + int(mask[:, 0].sum().item()) + 16
            for mask in downsample_attention_masks
        ]
        hd_images_reshape = [torch.cat([g, im], dim=0) for g, im in zip(global_image, hd_images_reshape)]
        hd_masks_reshape = [torch.cat([g, m], dim=0) for g, m in zip(global_attention_mask, attention_masks_reshape)]
        max_crops = max(img.size(0) for img in hd_images_reshape)
        image_transformed = torch.stack([self.pad_to_max_num_crops(im, max_crops) for im in hd_images_reshape], 0)
        mask_transformed = torch.stack([self.pad_mask_to_max_num_crops(m, max_crops) for m in hd_masks_reshape], 0)
        data = {
            "input_image_embeds": image_transformed,
            "image_sizes": torch.tensor(shapes, dtype=torch.long),
            "image_attention_mask": mask_transformed,
            "num_img_tokens": num_img_tokens,
        }
        return BatchFeature(data=data, tensor_type=return_tensors)

    @staticmethod
    def _to_pil(image):
        if isinstance(image, Image.Image):
            return image
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        return Image.fromarray(arr)


def speechlib_mel(sample_rate, n_fft, n_mels, fmin=None, fmax=None):
    """Kaldi-style triangular mel filterbank, shape (n_mels, n_fft // 2 + 1)."""
    bank_width = int(n_fft // 2 + 1)
    fmax = sample_rate / 2 if fmax is None else fmax
    fmin = 0 if fmin is None else fmin

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    def bin2mel(fft_bin):
        return 1127.0 * np.log(1.0 + fft_bin * sample_rate / (n_fft * 700.0))

    def f2bin(f):
        return int((f * n_fft / sample_rate) + 0.5)

    klo = f2bin(fmin) + 1
    khi = max(f2bin(fmax), klo)
    mlo, mhi = mel(fmin), mel(fmax)
    m_centers = np.linspace(mlo, mhi, n_mels + 2)
    ms = (mhi - mlo) / (n_mels + 1)
    matrix = np.zeros((n_mels, bank_width), dtype=np.float32)
    for m in range(n_mels):
        left, center, right = m_centers[m], m_centers[m + 1], m_centers[m + 2]
        for fft_bin in range(klo, khi):
            mbin = bin2mel(fft_bin)
            if left < mbin < right:
                matrix[m, fft_bin] = 1.0 - abs(center - mbin) / ms
    return matrix


class Phi4MMAudioFeatureExtractor(SequenceFeatureExtractor):
    """80-bin log-mel features at 16 kHz; one embedding per `audio_compression_rate` frames."""

    model_input_names = ["input_audio_embeds", "audio_embed_sizes", "audio_attention_mask"]

    def __init__(self, audio_compression_rate=8, audio_downsample_rate=1, audio_feat_stride=1, **kwargs):
        for k in ("feature_size", "sampling_rate", "padding_value"):
            kwargs.pop(k, None)
        super().__init__(feature_size=80, sampling_rate=16000, padding_value=0.0, **kwargs)
        self.audio_compression_rate = audio_compression_rate
        self.audio_downsample_rate = audio_downsample_rate
        self.audio_feat_stride = audio_feat_stride
        self.compression_rate = audio_compression_rate
        self.qformer_compression_rate = audio_downsample_rate
        self.feat_stride = audio_feat_stride
        self._mel = speechlib_mel(16000, 512, 80, fmin=None, fmax=7690).T
        self._hamming400 = np.hamming(400)

    def _compute_audio_embed_size(self, audio_frames):
        result = -(-audio_frames // self.compression_rate)
        return -(-result // self.qformer_compression_rate)

    def _extract_spectrogram(self, wav, fs):
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim > 1:
            wav = wav.mean(axis=-1) if wav.shape[-1] < wav.shape[0] else wav.mean(axis=0)
        if fs != 16000:
            # vLLM resamples to `sampling_rate` before calling; keep a simple fallback.
            n = int(round(len(wav) * 16000 / fs))
            wav = np.interp(np.linspace(0, len(wav) - 1, n), np.arange(len(wav)), wav).astype(np.float32)
        win_length, hop_length, n_fft, preemphasis = 400, 160, 512, 0.97
        n_batch = (wav.shape[0] - win_length) // hop_length + 1
        if n_batch < 1:
            raise ValueError("Waveform too short for given parameters.")
        idx = np.arange(win_length)[None, :] + hop_length * np.arange(n_batch)[:, None]
        y_frames = wav[idx]
        y_frames_prev = np.roll(y_frames, 1, axis=1)
        y_frames_prev[:, 0] = y_frames_prev[:, 1]
        y_frames = (y_frames - preemphasis * y_frames_prev) * 32768
        spec = np.fft.rfft(self._hamming400 * y_frames, n=n_fft, axis=1).astype(np.complex64)
        return np.abs(spec)

    def _extract_features(self, wav, fs):
        spec = self._extract_spectrogram(wav, fs)
        fbank_power = np.clip((spec ** 2).dot(self._mel), 1.0, None)
        return np.log(fbank_power).astype(np.float32)

    def __call__(self, audios, return_tensors=None, **kwargs):
        feats, sizes, frames = [], [], []
        for item in audios:
            audio_data, sample_rate = item if isinstance(item, (tuple, list)) else (item, self.sampling_rate)
            f = self._extract_features(audio_data, sample_rate)
            n_frames = len(f) * self.feat_stride
            feats.append(torch.tensor(f))
            sizes.append(torch.tensor(self._compute_audio_embed_size(n_frames)).long())
            frames.append(n_frames)
        data = {
            "input_audio_embeds": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True),
            "audio_embed_sizes": torch.stack(sizes, dim=0),
        }
        if len(feats) > 1:
            t = torch.tensor(frames)
            data["audio_attention_mask"] = torch.arange(0, int(t.max())).unsqueeze(0) < t.unsqueeze(1)
        return BatchFeature(data=data, tensor_type=return_tensors)


class Phi4MMProcessor(ProcessorMixin):
    """Image + audio + text processor; outputs the keys vLLM's Phi4MMForCausalLM expects."""

    attributes = ["image_processor", "audio_processor", "tokenizer"]
    tokenizer_class = "PreTrainedTokenizerFast"
    image_processor_class = "AutoImageProcessor"
    audio_processor_class = "AutoFeatureExtractor"

    def __init__(self, image_processor=None, audio_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # Sub-processors are set directly (ProcessorMixin's class checks differ across
        # transformers versions and do not know these remote classes).
        self.image_processor = image_processor
        self.audio_processor = audio_processor
        self.tokenizer = tokenizer
        if chat_template is None and tokenizer is not None:
            chat_template = getattr(tokenizer, "chat_template", None)
        self.chat_template = chat_template

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        path = str(pretrained_model_name_or_path)
        with open(os.path.join(path, PREPROCESSOR_CONFIG), encoding="utf-8") as f:
            cfg = json.load(f)
        image_processor = Phi4MMImageProcessor(dynamic_hd=kwargs.pop("dynamic_hd", cfg.get("dynamic_hd", 36)))
        audio_processor = Phi4MMAudioFeatureExtractor(
            audio_compression_rate=cfg.get("audio_compression_rate", 8),
            audio_downsample_rate=cfg.get("audio_downsample_rate", 1),
            audio_feat_stride=cfg.get("audio_feat_stride", 1),
        )
        tok_kwargs = {k: v for k, v in kwargs.items() if k in ("revision", "trust_remote_code", "local_files_only")}
        tokenizer = AutoTokenizer.from_pretrained(path, **tok_kwargs)
        return cls(image_processor, audio_processor, tokenizer)

    def save_pretrained(self, save_directory, **kwargs):
        raise NotImplementedError("the harness builds this model directory; nothing to save")

    @property
    def special_image_token_id(self):
        return _IMAGE_SPECIAL_TOKEN_ID

    @property
    def model_input_names(self):
        return list(
            dict.fromkeys(
                list(self.tokenizer.model_input_names)
                + self.image_processor.model_input_names
                + self.audio_processor.model_input_names
            )
        )

    def __call__(self, text=None, images=None, audios=None, padding=False, truncation=None, max_length=None,
                 return_tensors="pt", **kwargs):
        if images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        if audios is not None and not isinstance(audios, (list, tuple)):
            audios = [audios]
        image_inputs = self.image_processor(list(images), return_tensors="pt") if images else {}
        audio_inputs = self.audio_processor(list(audios), return_tensors="pt") if audios else {}
        if text is None:
            text = ""
        if isinstance(text, str):
            text = [text]
        text = [_IMAGE_PLACEHOLDER_RE.sub(_IMAGE_SPECIAL_TOKEN, t) for t in text]
        text = [_AUDIO_PLACEHOLDER_RE.sub(_AUDIO_SPECIAL_TOKEN, t) for t in text]

        num_img_tokens = list(image_inputs["num_img_tokens"]) if image_inputs else []
        audio_sizes = [int(x) for x in audio_inputs["audio_embed_sizes"]] if audio_inputs else []
        img_cnt = audio_cnt = 0
        new_ids = []
        for t in text:
            ids = self.tokenizer(t, add_special_tokens=False).input_ids
            expanded = []
            for token_id in ids:
                if token_id == _IMAGE_SPECIAL_TOKEN_ID:
                    expanded.extend([token_id] * int(num_img_tokens[img_cnt]))
                    img_cnt += 1
                elif token_id == _AUDIO_SPECIAL_TOKEN_ID:
                    expanded.extend([token_id] * int(audio_sizes[audio_cnt]))
                    audio_cnt += 1
                else:
                    expanded.append(token_id)
            new_ids.append(expanded)
        assert img_cnt == len(num_img_tokens), (
            f"{len(num_img_tokens)} images but {img_cnt} image placeholders in the text"
        )
        assert audio_cnt == len(audio_sizes), f"{len(audio_sizes)} audios but {audio_cnt} audio placeholders"

        max_len = max(len(x) for x in new_ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 199999
        input_ids = torch.full((len(new_ids), max_len), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(new_ids), max_len), dtype=torch.long)
        for i, x in enumerate(new_ids):  # left padding, as the original
            if x:
                input_ids[i, max_len - len(x):] = torch.tensor(x, dtype=torch.long)
                attention_mask[i, max_len - len(x):] = 1

        data = {"input_ids": input_ids, "attention_mask": attention_mask}
        if image_inputs:
            data["input_image_embeds"] = image_inputs["input_image_embeds"]
            data["image_sizes"] = image_inputs["image_sizes"]
            data["image_attention_mask"] = image_inputs["image_attention_mask"]
        if audio_inputs:
            data["input_audio_embeds"] = audio_inputs["input_audio_embeds"]
            data["audio_embed_sizes"] = audio_inputs["audio_embed_sizes"]
            if "audio_attention_mask" in audio_inputs:
                data["audio_attention_mask"] = audio_inputs["audio_attention_mask"]
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)
