// Microphone audio -> 16-bit PCM WAV, entirely in the browser.
//
// MediaRecorder gives a compressed blob (WebM/Opus in Chromium and Firefox, MP4/AAC in Safari)
// that the service may not decode, so the page decodes it with WebAudio, mixes it to mono,
// resamples it and writes a plain WAV file, which every soundfile build reads.

export const WAV_SAMPLE_RATE = 16000;

/** Average the channels of an AudioBuffer into one Float32Array. */
export function mixToMono(buffer) {
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c += 1) {
    const channel = buffer.getChannelData(c);
    for (let i = 0; i < buffer.length; i += 1) mono[i] += channel[i] / buffer.numberOfChannels;
  }
  return mono;
}

/** Resample mono samples with an OfflineAudioContext (the browser's own resampler). */
export async function resample(samples, fromRate, toRate) {
  if (fromRate === toRate || samples.length === 0) return samples;
  const length = Math.max(1, Math.round((samples.length * toRate) / fromRate));
  const context = new OfflineAudioContext(1, length, toRate);
  const source = context.createBufferSource();
  const input = context.createBuffer(1, samples.length, fromRate);
  input.copyToChannel(samples, 0);
  source.buffer = input;
  source.connect(context.destination);
  source.start();
  const rendered = await context.startRendering();
  return rendered.getChannelData(0);
}

/** A RIFF/WAVE file of mono 16-bit little-endian PCM. */
export function encodeWav(samples, sampleRate) {
  const bytesPerSample = 2;
  const dataBytes = samples.length * bytesPerSample;
  const view = new DataView(new ArrayBuffer(44 + dataBytes));
  const ascii = (offset, text) => {
    for (let i = 0; i < text.length; i += 1) view.setUint8(offset + i, text.charCodeAt(i));
  };
  ascii(0, "RIFF");
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // size of the fmt chunk
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * bytesPerSample, true); // byte rate
  view.setUint16(32, bytesPerSample, true); // block align
  view.setUint16(34, 8 * bytesPerSample, true);
  ascii(36, "data");
  view.setUint32(40, dataBytes, true);
  for (let i = 0; i < samples.length; i += 1) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * bytesPerSample, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

/** Any audio blob the browser can decode -> a mono 16-bit WAV blob at `sampleRate`. */
export async function blobToWav(blob, sampleRate = WAV_SAMPLE_RATE) {
  const context = new AudioContext();
  try {
    const decoded = await context.decodeAudioData(await blob.arrayBuffer());
    const mono = await resample(mixToMono(decoded), decoded.sampleRate, sampleRate);
    return encodeWav(mono, sampleRate);
  } finally {
    await context.close();
  }
}
