classdef RawEMG < scistack.BaseVariable
end
