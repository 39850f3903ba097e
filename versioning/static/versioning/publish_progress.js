// Shows the upload's progress; the form still works without JavaScript.
document.getElementById("publish-form").addEventListener("submit", function (event) {
  if (!window.XMLHttpRequest || !window.FormData) return;
  event.preventDefault();
  var form = event.target, bar = document.getElementById("upload-progress");
  var xhr = new XMLHttpRequest();
  bar.hidden = false;
  xhr.upload.onprogress = function (e) { if (e.lengthComputable) bar.value = 100 * e.loaded / e.total; };
  xhr.onload = function () { document.open(); document.write(xhr.responseText); document.close(); history.replaceState(null, "", xhr.responseURL); };
  xhr.open("POST", form.action || window.location.href);
  xhr.send(new FormData(form));
});
