// The microphone as the guide's clock hears it (static/record.js): keeps the last seconds
// of the input, each sample at its context frame, and hands them over when asked, so the
// page can find where a recording's first sample entered the context, to the sample.
class Tap extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const seconds = (options.processorOptions && options.processorOptions.seconds) || 4;
    this.ring = new Float32Array(Math.round(seconds * sampleRate));
    this.first = -1;  // the first context frame heard
    this.end = 0;     // one past the last context frame heard
    this.port.onmessage = () => {
      const size = this.ring.length;
      const n = this.first < 0 ? 0 : Math.min(size, this.end - this.first);
      const out = new Float32Array(n);
      const frame = this.end - n;
      for (let i = 0; i < n; i += 1) { out[i] = this.ring[(frame + i) % size]; }
      this.port.postMessage({ samples: out, frame: frame }, [out.buffer]);
    };
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) { return true; }
    if (this.first < 0) { this.first = currentFrame; }
    const size = this.ring.length;
    for (let i = 0; i < input.length; i += 1) { this.ring[(currentFrame + i) % size] = input[i]; }
    this.end = currentFrame + input.length;
    return true;
  }
}
registerProcessor("record-tap", Tap);
