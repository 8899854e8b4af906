// @ts-check
// Enroll: photos (picked or camera frames) -> the pipeline on the phone -> 1-16 feature payloads
// -> POST /api/v1/enroll {identity, display_name, features}. Only the payloads leave the phone.
const client = require("../../common/client.js");
const { mine, pageMethods } = require("../../common/page.js");

const { faceid } = client;

Component({
  data: {
    ready: false, busy: true, cameraOn: false,
    state: "loading", stateText: "Loading the face models…",
    identity: "", displayName: "", samples: 0, maxSamples: 16, modelLine: "", metrics: "",
  },

  methods: {
    ...pageMethods({
      readyText: "Ready: add photos to enroll someone.", photoWord: "photos",
      readyData: (session) => ({ maxSamples: session.server.max_enroll_features || 16 }),
    }),

    onIdentityInput(e) {
      this.setData({ identity: e.detail.value });
    },

    onDisplayNameInput(e) {
      this.setData({ displayName: e.detail.value });
    },

    /** Keep one accepted face; false when the enrollment is full. */
    addSample(result) {
      if (mine(this).samples.length >= this.data.maxSamples) {
        this.show("error", `At most ${this.data.maxSamples} photos per enrollment: enroll these first.`);
        return false;
      }
      mine(this).samples.push(result.vector);
      this.setData({ samples: mine(this).samples.length,
        metrics: client.metricsLine(mine(this).session, result.timings) });
      return true;
    },

    async onChoose() {
      const room = this.data.maxSamples - mine(this).samples.length;
      this.setData({ busy: true });
      let added = 0;
      const skipped = [];
      try {
        const paths = await client.choosePhotos(Math.max(1, Math.min(9, room)));
        if (!paths.length) return;
        for (const [i, path] of paths.entries()) {
          const name = path.split("/").pop();
          const label = paths.length > 1 ? `photo ${i + 1} (${name})` : "";
          const image = await client.readPhoto(path, label, (s, t) => this.show(s, t));
          const outcome = image ? await client.analyse(mine(this).session, image, label,
            (s, t) => this.show(s, t)) : { refused: "not-image" };
          if (!outcome.refused && this.addSample(outcome.result)) added++;
          else if (outcome.refused) skipped.push(`${name}: ${faceid.SHORT[outcome.refused]}`);
        }
        if (added) {
          this.show("ok", `${mine(this).samples.length} face(s) ready to enroll` +
            (skipped.length ? `; skipped ${skipped.join("; ")}` : "") + ".");
        } else if (paths.length > 1) {
          this.show("no-face", `None of these photos gave a usable face (${skipped.join("; ")}).`);
        }
      } catch (error) {
        const [state, text] = faceid.errorState(error);
        this.show(state, text);
      } finally {
        this.setData({ busy: false });
      }
    },

    async onCapture() {
      if (!mine(this).camera) return;
      this.setData({ busy: true });
      try {
        const image = await mine(this).camera.grab();
        const outcome = await client.analyse(mine(this).session, image, "", (s, t) => this.show(s, t));
        if (!outcome.refused && this.addSample(outcome.result)) {
          this.show("ok", `${mine(this).samples.length} face(s) ready to enroll.`);
        }
      } catch (error) {
        const [state, text] = faceid.errorState(error);
        this.show(state, text);
      } finally {
        this.setData({ busy: false });
      }
    },

    onClear() {
      mine(this).samples = [];
      this.setData({ samples: 0 });
      this.show("ready", "Cleared: add photos to enroll someone.");
    },

    async onEnroll() {
      const identity = this.data.identity.trim();
      if (!identity) {
        this.show("error", "Type an identity (a name or id) first.");
        return;
      }
      if (!mine(this).samples.length) {
        this.show("error", "Add at least one photo first.");
        return;
      }
      this.setData({ busy: true });
      try {
        const s = mine(this).session;
        const features = mine(this).samples.map((v) => s.codec.encodeText(v));
        const displayName = this.data.displayName.trim();
        const answer = await s.api.enroll(identity, features, displayName || undefined);
        const [state, text] = faceid.enrollState(answer, displayName);
        mine(this).samples = [];
        // The next person's photos must not be filed under this name.
        this.setData({ state, stateText: text, samples: 0, identity: "", displayName: "" });
      } catch (error) {
        const [state, text] = faceid.errorState(error);
        this.show(state, text);
      } finally {
        this.setData({ busy: false });
      }
    },
  },
});
