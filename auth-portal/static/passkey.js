// Passkeys: the WebAuthn calls of certgate's pages, the one thing they need a script for.
// A form with data-passkey carries the ceremony's options (data-options, made by the portal
// with the page); sending it asks the browser to make or use a passkey, puts the browser's
// answer in the form's "credential" field and sends that. Without WebAuthn the passkey parts
// stay hidden and the page says so; everything else works without this script.
(function () {
  "use strict";
  var webauthn = !!(window.PublicKeyCredential && navigator.credentials && window.fetch !== undefined);

  function bytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }
  function text(buffer) {
    if (!buffer) { return null; }
    var view = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < view.length; i++) { raw += String.fromCharCode(view[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function ids(list) {
    (list || []).forEach(function (c) { c.id = bytes(c.id); });
  }
  // The options as the portal wrote them (base64url), as the browser takes them (bytes).
  function creation(form) {
    var o = JSON.parse(form.getAttribute("data-options")).publicKey;
    o.challenge = bytes(o.challenge);
    o.user.id = bytes(o.user.id);
    ids(o.excludeCredentials);
    return { publicKey: o };
  }
  function request(form) {
    var o = JSON.parse(form.getAttribute("data-options")).publicKey;
    o.challenge = bytes(o.challenge);
    ids(o.allowCredentials);
    return { publicKey: o };
  }
  // The browser's answer as the portal reads it.
  function made(c) {
    return { id: c.id, rawId: text(c.rawId), type: c.type, extensions: {},
      response: { attestationObject: text(c.response.attestationObject),
        clientDataJSON: text(c.response.clientDataJSON) } };
  }
  function used(c) {
    return { id: c.id, rawId: text(c.rawId), type: c.type, extensions: {},
      response: { authenticatorData: text(c.response.authenticatorData),
        clientDataJSON: text(c.response.clientDataJSON),
        signature: text(c.response.signature), userHandle: text(c.response.userHandle) } };
  }
  function send(form, answer) {
    form.elements.credential.value = JSON.stringify(answer);
    form.submit();
  }
  function failed(form) {
    var note = form.querySelector("[data-passkey-error]") || document.querySelector("[data-passkey-error]");
    if (note) { note.hidden = false; }
  }

  var waiting = null; // the sign-in page's autofill request, stopped when the button is used
  function ceremony(form) {
    if (waiting) { waiting.abort(); waiting = null; }
    var kind = form.getAttribute("data-passkey");
    var asked = kind === "register"
      ? navigator.credentials.create(creation(form)).then(made)
      : navigator.credentials.get(request(form)).then(used);
    asked.then(function (answer) { send(form, answer); }, function () { failed(form); });
  }

  document.querySelectorAll("[data-passkey-missing]").forEach(function (note) {
    note.hidden = webauthn;
  });
  if (!webauthn) { return; }

  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      ceremony(form);
    });
  });

  // The choice page: the passkey first, and chosen, where the device has a fingerprint, face
  // or screen-lock sensor; else last, for a phone nearby or a security key.
  var option = document.querySelector("[data-passkey-option]");
  if (option) {
    option.hidden = false;
    var platform = PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable
      ? PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable() : Promise.resolve(false);
    platform.then(function (yes) {
      if (yes) {
        option.querySelector("input").checked = true;
      } else {
        option.parentNode.appendChild(option);
      }
    }, function () {});
  }

  // The sign-in page: passkeys offered in the user-name field's suggestions (conditional UI);
  // not again on the page that says one was refused, which the button still offers.
  var discover = document.querySelector("form[data-passkey='discover'][data-autofill]");
  if (discover && PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable().then(function (yes) {
      if (!yes) { return; }
      waiting = new AbortController();
      var options = request(discover);
      options.mediation = "conditional";
      options.signal = waiting.signal;
      navigator.credentials.get(options).then(function (c) { send(discover, used(c)); }, function () {});
    }, function () {});
  }
})();
