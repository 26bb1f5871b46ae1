function text = b64_encode(bytes)
%B64_ENCODE Standard base64 text (with = padding) of bytes.
alphabet = ['A':'Z', 'a':'z', '0':'9', '+', '/'];
b = double(bytes(:)');
n = numel(b);
pad = mod(3 - mod(n, 3), 3);
b = [b, zeros(1, pad)];
g = reshape(b, 3, []);
v = [floor(g(1, :) / 4); ...
     mod(g(1, :), 4) * 16 + floor(g(2, :) / 16); ...
     mod(g(2, :), 16) * 4 + floor(g(3, :) / 64); ...
     mod(g(3, :), 64)];
text = alphabet(v(:)' + 1);
if pad > 0
    text(end - pad + 1:end) = '=';
end
end
