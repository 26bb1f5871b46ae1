classdef BaseVariable < scistack.BaseVariable
%BASEVARIABLE Alias of scistack.BaseVariable: classdef RawEMG < scidb.BaseVariable works too.
end
