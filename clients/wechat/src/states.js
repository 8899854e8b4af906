// The page states and their wording: clients/web/app.js's, with "this mini-program" for "this
// page". Each state has a name (what tests and WXSS key on) and a sentence for the person.
import { LIMITS } from "../../web/face_core.js";
import { ApiError } from "../../web/api.js";

/** Why the pipeline refused a photo or a frame (face_core's process status). */
export const MESSAGES = {
  "not-image": (r) => `${r.name || "This file"} is not an image this phone can read: choose ` +
    "a JPEG or PNG photo.",
  "no-face": () => "No face found. Face the camera in good light, or choose another photo.",
  "several-faces": (r) => `${r.faces.length} faces found: one person at a time, please.`,
  "too-small": (r) => `Face too small (eyes ${r.face.eyeDistance.toFixed(0)} px apart, need ` +
    `${LIMITS.minEyeDistance}): come closer or use a larger photo.`,
};

/** The same, in a few words (the list of skipped photos). */
export const SHORT = { "not-image": "not an image", "no-face": "no face found",
  "several-faces": "several faces", "too-small": "face too small" };

/** An identify answer ({recognised, identity, display_name, reason}) as [state, text, answer]. */
export function identifyState(answer) {
  if (answer.recognised) {
    const who = answer.display_name || answer.identity;
    return ["recognised", `Recognised as ${who}.`, `Recognised as ${who}`];
  }
  if (answer.reason === "ambiguous") {
    return ["ambiguous", "Not sure: this face is close to more than one enrolled person.",
      "Not sure who this is"];
  }
  if (answer.reason === "empty_gallery") {
    return ["not-recognised", "Nobody is enrolled yet: enroll someone first.", "Not recognised"];
  }
  return ["not-recognised", "Not recognised: this face is not enrolled.", "Not recognised"];
}

/** An enroll answer as [state, text]. */
export function enrollState(answer, displayName) {
  const who = displayName || answer.identity;
  const conflicts = answer.conflicts ?? [];
  return [conflicts.length ? "enrolled-conflict" : "enrolled",
    `Enrolled ${who}: ${answer.templates_added} face(s)` +
    (answer.created ? " (new identity)." : " added to the existing identity.") +
    (conflicts.length ? ` Warning: these faces also match ${conflicts.join(", ")}; ` +
      "check that this is not the same person enrolled twice." : "")];
}

/** An error as [state, text]: the server's model differs ("model-mismatch"), or "error". */
export function errorState(error) {
  if (error?.code === "model-mismatch" || (error instanceof ApiError &&
      error.code === "model_mismatch")) {
    return ["model-mismatch", error instanceof ApiError
      ? "The server's gallery uses another model than this mini-program: restart it after " +
        "updating."
      : `Model mismatch: ${error.message}.`];
  }
  if (error instanceof ApiError) {
    if (error.code === "rate_limited") return ["error", "Too many requests: wait a moment and retry."];
    if (error.code === "network") return ["error", `Server unreachable: ${error.message}`];
    return ["error", `Server refused the request (${error.status} ${error.code}): ${error.message}`];
  }
  return ["error", `Error: ${error?.message ?? error}`];
}
