#version 330 core
// Grade pass, at bank resolution, only while feedback trails are on: intensity and flash applied to
// the trail state into a separate image, so they stay out of the feedback loop. (Without trails the
// blend pass applies them itself.) Cheaper than grading in the output pass: bank pixels, not output.
// Fragment stage only: the vertex stage is fullscreen.glsl.

#ifdef FRAGMENT
uniform sampler2D state;
uniform float intensity;  // output gain
uniform float flash;      // mix toward white (beat flash or strobe)
out vec4 color;
void main() {
    vec3 c = texelFetch(state, ivec2(gl_FragCoord.xy), 0).rgb;
    color = vec4(mix(c * intensity, vec3(1.0), flash), 1.0);
}
#endif
