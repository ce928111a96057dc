"""The level meter and the gain that brings audio to the model's level (codec.loudness)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codec.loudness import LoudnessMeter, amplitude, gain_db

from .conftest import speech_like


def tone(seconds: float, rms_dbfs: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sqrt(2) * 10 ** (rms_dbfs / 20) * np.sin(2 * np.pi * 440 * t))[None]


def level(wav: np.ndarray, rate: int = 16000) -> float:
    meter = LoudnessMeter(rate)
    meter.push(wav)
    return meter.level_dbfs


def test_a_steady_tone_measures_its_rms():
    assert level(tone(2.0, -30.0)) == pytest.approx(-30.0, abs=0.01)
    assert level(np.concatenate([tone(2.0, -30.0)] * 2)) == pytest.approx(-30.0, abs=0.01)   # two channels


def test_pauses_and_silence_do_not_lower_the_level():
    speech = tone(2.0, -25.0)
    padded = np.concatenate([np.zeros((1, int(16000 * 4.8))), speech, tone(5.0, -60.0)], axis=1)  # whole blocks
    assert level(padded) == pytest.approx(-25.0, abs=0.05)
    assert 20 * math.log10(np.sqrt(np.mean(padded ** 2))) < -30          # where a plain RMS would be


def test_the_level_does_not_depend_on_how_the_audio_is_cut_into_blocks():
    wav = speech_like(3.3, channels=2)
    meter = LoudnessMeter(16000)
    for start in range(0, wav.shape[1], 1234):
        meter.push(wav[:, start:start + 1234])
    assert meter.level_dbfs == level(wav)
    assert meter.gain_db(-20) == gain_db(wav, 16000, -20)


def test_a_clip_shorter_than_one_block_is_measured_whole():
    assert level(tone(0.1, -30.0)) == pytest.approx(-30.0, abs=0.1)


def test_the_gain_comes_in_half_decibel_steps_and_reaches_the_target():
    wav = tone(2.0, -33.3)
    gain = gain_db(wav, 16000, -20.0)
    assert gain / 0.5 == int(gain / 0.5) and -20.5 < -33.3 + gain <= -20.0


def test_the_gain_keeps_the_peak_below_full_scale():
    clicks = tone(2.0, -40.0)
    clicks[0, 1000] = 0.5                                                # one loud click
    gain = gain_db(clicks, 16000, -20.0)
    assert 0.5 * amplitude(gain) <= 0.99 and gain < 20


def test_silence_and_noise_below_the_gate_get_no_gain():
    assert gain_db(np.zeros((1, 16000)), 16000, -20.0) == 0.0
    assert gain_db(tone(1.0, -80.0), 16000, -20.0) == 0.0
    assert gain_db(np.zeros((1, 0)), 16000, -20.0) == 0.0


def test_extreme_gains_are_clamped_to_what_the_header_holds():
    assert gain_db(tone(1.0, -69.0), 16000, 10.0) == 63.5            # would be +79 dB
    assert gain_db(tone(1.0, -69.0), 16000, -20.0) == 49.0
    assert gain_db(tone(1.0, -3.0), 16000, -80.0) == -64.0


def test_a_silent_channel_does_not_make_the_others_coded_too_loud():
    voice = tone(2.0, -30.0)
    stereo = np.concatenate([voice, np.zeros_like(voice)])
    assert level(stereo) == pytest.approx(-30.0, abs=0.01)            # the loudest channel's level
    assert gain_db(stereo, 16000, -20.0) == gain_db(voice, 16000, -20.0)


def test_a_last_part_block_counts_when_it_is_at_least_half_a_block():
    late = np.concatenate([np.zeros((1, 6400)), tone(0.3, -30.0)], axis=1)   # 0.4 s silence, 0.3 s tone
    assert level(late) == pytest.approx(-30.0, abs=0.05)
    crumb = np.concatenate([tone(0.8, -30.0), tone(0.1, -10.0)], axis=1)     # 0.1 s: under half a block
    assert level(crumb) == pytest.approx(-30.0, abs=0.01)


def test_the_meter_wants_channels_and_samples():
    with pytest.raises(ValueError, match="channels, samples"):
        LoudnessMeter(16000).push(np.zeros(100))
    assert gain_db(tone(1.0, -30.0)[0], 16000, -20.0) == gain_db(tone(1.0, -30.0), 16000, -20.0)   # 1-D is mono
