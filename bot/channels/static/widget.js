/*
 * Passerelle web chat — embeddable with one tag, no build step:
 *
 *   <script src="https://passerelle.example.org/widget.js"
 *           data-key="pwk_…"               (public widget key of the establishment)
 *           data-api="https://passerelle.example.org"   (optional: defaults to the script's origin)
 *           data-context="chu-exemple"      (optional: puts the establishment's contacts first)
 *           data-target="id-of-a-div"       (optional: where to draw; else right after the tag)
 *           async></script>
 *
 * Accessible: everything works with the keyboard, replies are announced by an ARIA live
 * region, buttons are large. Text is always inserted as text (never as HTML).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) { return; }
  var data = script.dataset;
  var scriptUrl = new URL(script.src, window.location.href);
  var api = (data.api || scriptUrl.origin).replace(/\/+$/, "") + "/api/v1";
  var key = data.key || "";
  var context = data.context || null;
  var storageKey = "passerelle:" + key.slice(0, 16) + ":" + (context || "");
  var uid = Math.random().toString(36).slice(2, 8);

  var TEXT = {
    title: "Passerelle — discussion d'orientation",
    log: "Conversation avec Passerelle",
    you: "Vous : ",
    bot: "Passerelle : ",
    label: "Votre message (ou choisissez une réponse ci-dessus)",
    send: "Envoyer",
    choices: "Réponses proposées",
    restart: "Nouvelle conversation",
    barometer: "Baromètre",
    barometerHint: "Évaluer notre partenariat (baromètre)",
    erase: "Effacer cette conversation",
    erased: "Conversation effacée. Une nouvelle commence.",
    waiting: "Passerelle écrit…",
    noKey: "La discussion n'est pas configurée (clé manquante).",
    network: "Le service ne répond pas pour l'instant. Vérifiez votre connexion et réessayez dans un moment.",
    tooMany: "Beaucoup de messages d'un coup : patientez quelques secondes puis réessayez.",
    stale: "Ce bouton n'est plus valable. Choisissez parmi les dernières réponses proposées.",
    tooLong: "Votre message est trop long : 2 000 caractères au plus.",
    generic: "Un problème est survenu. Réessayez, ou recommencez une conversation."
  };

  // -- styles -------------------------------------------------------------------------------
  if (!document.querySelector("link[data-passerelle]")) {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = new URL("widget.css", scriptUrl).href;
    link.setAttribute("data-passerelle", "");
    document.head.appendChild(link);
  }

  // -- DOM ----------------------------------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  var root = el("section", { "class": "passerelle", "aria-labelledby": "passerelle-title-" + uid });
  root.appendChild(el("h2", { "class": "passerelle-title", id: "passerelle-title-" + uid }, TEXT.title));
  var log = el("div", {
    "class": "passerelle-log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
    "aria-label": TEXT.log, tabindex: "0"
  });
  root.appendChild(log);
  var status = el("p", { "class": "passerelle-sr", role: "status" });
  root.appendChild(status);
  var form = el("form", { "class": "passerelle-form", novalidate: "" });
  var inputId = "passerelle-input-" + uid;
  form.appendChild(el("label", { "for": inputId }, TEXT.label));
  var input = el("input", { id: inputId, type: "text", maxlength: "2000", autocomplete: "off" });
  form.appendChild(input);
  var sendButton = el("button", { type: "submit" }, TEXT.send);
  form.appendChild(sendButton);
  root.appendChild(form);
  var tools = el("div", { "class": "passerelle-tools" });
  var restartButton = el("button", { type: "button" }, TEXT.restart);
  var barometerButton = el("button", { type: "button", "class": "passerelle-barometer" }, TEXT.barometer);
  var eraseButton = el("button", { type: "button" }, TEXT.erase);
  tools.appendChild(restartButton);
  tools.appendChild(barometerButton);
  tools.appendChild(eraseButton);
  root.appendChild(tools);

  var target = data.target ? document.getElementById(data.target) : null;
  if (target) { target.appendChild(root); } else { script.parentNode.insertBefore(root, script.nextSibling); }

  // -- state --------------------------------------------------------------------------------
  var conversationId = null;
  // The conversation's own secret, given at creation: the public key alone never reads it.
  var conversationSecret = null;
  var busy = false;

  function remember(id, secret) {
    conversationId = id;
    conversationSecret = id ? (secret || null) : null;
    try {
      if (id) {
        window.sessionStorage.setItem(storageKey, id);
        window.sessionStorage.setItem(storageKey + ":secret", conversationSecret || "");
      } else {
        window.sessionStorage.removeItem(storageKey);
        window.sessionStorage.removeItem(storageKey + ":secret");
      }
    } catch (e) { /* storage may be disabled: the conversation simply won't survive a reload */ }
  }

  function recalled() {
    try {
      conversationSecret = window.sessionStorage.getItem(storageKey + ":secret") || null;
      return window.sessionStorage.getItem(storageKey);
    } catch (e) { return null; }
  }

  function call(method, path, body) {
    var options = { method: method, headers: { "Authorization": "Bearer " + key } };
    if (conversationSecret && path !== "/conversations") {
      options.headers["X-Conversation-Secret"] = conversationSecret;
    }
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(api + path, options).then(function (response) {
      if (response.status === 204) { return { status: 204, body: null }; }
      return response.json().then(
        function (json) { return { status: response.status, body: json }; },
        function () { return { status: response.status, body: null }; }
      );
    });
  }

  // -- rendering ----------------------------------------------------------------------------
  function disableChoices() {
    var buttons = log.querySelectorAll(".passerelle-choices button");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
  }

  function addPerson(text) {
    var node = el("div", { "class": "passerelle-msg passerelle-person" });
    node.appendChild(el("span", { "class": "passerelle-sr" }, TEXT.you));
    node.appendChild(document.createTextNode(text));
    log.appendChild(node);
  }

  function addError(text) {
    var node = el("div", { "class": "passerelle-msg passerelle-error", role: "alert" }, text);
    log.appendChild(node);
    scrollDown();
  }

  function addReply(reply, active) {
    var node = el("div", { "class": "passerelle-msg passerelle-bot" });
    node.appendChild(el("span", { "class": "passerelle-sr" }, TEXT.bot));
    node.appendChild(document.createTextNode(reply.text || ""));
    if (reply.image_url) {
      node.appendChild(el("img", { src: reply.image_url, alt: reply.image_alt || "" }));
    }
    var first = null;
    if (reply.choices && reply.choices.length) {
      var group = el("div", { "class": "passerelle-choices", role: "group", "aria-label": TEXT.choices });
      reply.choices.forEach(function (choice) {
        var button = el("button", { type: "button", "data-choice": choice.id }, choice.label);
        button.disabled = !active;
        button.addEventListener("click", function () { choose(choice); });
        group.appendChild(button);
        if (!first) { first = button; }
      });
      node.appendChild(group);
    }
    log.appendChild(node);
    return first;
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function showTurn(turn, focusChoices) {
    disableChoices();
    var first = null;
    (turn.replies || []).forEach(function (reply) {
      var button = addReply(reply, true);
      if (button) { first = first || button; }
    });
    scrollDown();
    if (focusChoices && first) { first.focus(); } else if (focusChoices) { input.focus(); }
  }

  function setBusy(value) {
    busy = value;
    log.setAttribute("aria-busy", value ? "true" : "false");
    status.textContent = value ? TEXT.waiting : "";
  }

  function explain(result) {
    if (!result) { return TEXT.network; }
    var code = result.body && result.body.error ? result.body.error.code : "";
    if (result.status === 429) { return TEXT.tooMany; }
    if (code === "unknown_choice") { return TEXT.stale; }
    if (code === "text_too_long" || code === "body_too_large") { return TEXT.tooLong; }
    if (result.status === 401) { return TEXT.noKey; }
    return TEXT.generic;
  }

  // -- actions ------------------------------------------------------------------------------
  function start(focus) {
    if (!key) { addError(TEXT.noKey); return Promise.resolve(); }
    setBusy(true);
    return call("POST", "/conversations", context ? { context: context } : {}).then(function (result) {
      setBusy(false);
      if (result.status !== 201) { addError(explain(result)); return; }
      remember(result.body.conversation_id, result.body.conversation_secret);
      showTurn(result.body, focus);
    }, function () { setBusy(false); addError(TEXT.network); });
  }

  function send(body, shown, focusChoices) {
    if (busy) { return; }
    if (!conversationId) { start(true); return; }
    addPerson(shown);
    scrollDown();
    setBusy(true);
    call("POST", "/conversations/" + encodeURIComponent(conversationId) + "/messages", body).then(function (result) {
      setBusy(false);
      if (result.status === 200) { showTurn(result.body, focusChoices); return; }
      if (result.status === 404) { remember(null); start(true); return; }
      addError(explain(result));
    }, function () { setBusy(false); addError(TEXT.network); });
  }

  function choose(choice) { send({ choice: choice.id }, choice.label, true); }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || busy) { return; }
    if (text.length > 2000) { addError(TEXT.tooLong); return; }
    input.value = "";
    send({ text: text }, text, false);
    input.focus();
  });

  barometerButton.addEventListener("click", function () {
    if (busy || !conversationId) { return; }
    send({ choice: "cmd:barometre" }, TEXT.barometerHint, true);
  });

  restartButton.addEventListener("click", function () {
    if (busy) { return; }
    remember(null);
    disableChoices();
    start(true);
  });

  eraseButton.addEventListener("click", function () {
    if (busy || !conversationId) { return; }
    var id = conversationId;
    setBusy(true);
    call("DELETE", "/conversations/" + encodeURIComponent(id)).then(function () {
      setBusy(false);
      remember(null);
      while (log.firstChild) { log.removeChild(log.firstChild); }
      log.appendChild(el("div", { "class": "passerelle-msg passerelle-bot" }, TEXT.erased));
      start(true);
    }, function () { setBusy(false); addError(TEXT.network); });
  });

  // -- resume after a reload, else start ----------------------------------------------------
  function resume(id) {
    return call("GET", "/conversations/" + encodeURIComponent(id)).then(function (result) {
      if (result.status !== 200) { remember(null); return start(false); }
      conversationId = id;
      var lines = result.body.transcript || [];
      var lastPerson = -1;
      lines.forEach(function (line, index) { if (line.author === "person") { lastPerson = index; } });
      lines.forEach(function (line, index) {
        if (line.author === "person") {
          addPerson(line.text !== null ? line.text : labelOf(lines, index, line.choice));
        } else {
          addReply({ text: line.text, choices: line.choices }, index > lastPerson);
        }
      });
      scrollDown();
    }, function () { addError(TEXT.network); });
  }

  function labelOf(lines, index, choiceId) {
    for (var i = index - 1; i >= 0; i--) {
      var choices = lines[i].choices || [];
      for (var j = 0; j < choices.length; j++) {
        if (choices[j].id === choiceId) { return choices[j].label; }
      }
    }
    return choiceId || "";
  }

  var previous = recalled();
  if (previous && key) { resume(previous); } else { start(false); }
})();
