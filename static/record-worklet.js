// The calibration's ear (static/record.js): posts the context frame of every sharp onset
// the microphone hears (a click through the speakers, a clap), to the sample.
class OnsetTimes extends AudioWorkletProcessor {
  constructor() {
    super();
    this.slow = 1e-6;     // the room's level (a slow average of the power)
    this.quietUntil = 0;  // no second onset within 150 ms of one
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) { return true; }
    for (let i = 0; i < input.length; i += 1) {
      const frame = currentFrame + i;
      const power = input[i] * input[i];
      if (frame >= this.quietUntil && power > 1e-4 && power > 30 * this.slow) {
        this.port.postMessage(frame);
        this.quietUntil = frame + Math.round(0.15 * sampleRate);
      }
      this.slow += (power - this.slow) * 0.0005;
    }
    return true;
  }
}
registerProcessor("onset-times", OnsetTimes);
