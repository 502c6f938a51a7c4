#version 330 core
// Video out: the show's output scaled into a sink's own size (letterboxed into the viewport `rect`).
// Vertex stage: fullscreen.glsl.

#ifdef FRAGMENT
uniform sampler2D source;
uniform vec4 rect;  // destination x, y, width, height in pixels
out vec4 color;

void main() {
    vec2 uv = (gl_FragCoord.xy - rect.xy) / rect.zw;
    color = texture(source, uv);
}
#endif
