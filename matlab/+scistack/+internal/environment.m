function env = environment()
%ENVIRONMENT What a call record's env says about this session: language and version
%   (Python adds host, user, platform and git state).
if scistack.internal.is_octave()
    env = struct('language', 'matlab', 'octave', version());
else
    env = struct('language', 'matlab', 'matlab', version());
end
end
